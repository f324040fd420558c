"""Deterministic randomness: every roll is a sha256 of stable ids and a label.

Rolls do not depend on each other's order or on Python's `hash()` or `random`
implementation, so a replay on any machine and any Python reproduces every loot
drop, crafting quality and fight outcome.
"""

from __future__ import annotations

import hashlib

_SCALE = float(1 << 53)


class StepRng:
    """The random source of one task step, seeded from (player, task, attempt, step)."""

    __slots__ = ("_seed",)

    def __init__(self, *ids: str | int) -> None:
        self._seed = hashlib.sha256("\x1f".join(str(i) for i in ids).encode()).digest()

    @classmethod
    def for_step(cls, player_id: str, task_id: str, step: int, attempt: int) -> StepRng:
        return cls("step", player_id, task_id, step, attempt)

    def roll(self, label: str) -> float:
        """A uniform number in [0, 1) named by `label` (the same label gives the same number)."""
        digest = hashlib.sha256(self._seed + label.encode()).digest()
        return (int.from_bytes(digest[:8], "big") >> 11) / _SCALE

    def chance(self, label: str, p: float) -> bool:
        return self.roll(label) < p

    def between(self, label: str, low: int, high: int) -> int:
        """A uniform integer in [low, high]."""
        if high <= low:
            return low
        return low + int(self.roll(label) * (high - low + 1))


def stable_id(prefix: str, *parts: str, length: int = 12) -> str:
    """An id derived from stable inputs, e.g. a task id from (player, command id)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return f"{prefix}{digest[:length]}"
