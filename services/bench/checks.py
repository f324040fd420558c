"""What a correct run leaves behind, checked from the log itself.

Per player: versions dense from 1; every completed step has exactly one
`reward.granted`; every command the gateway acknowledged is in the log at the
version it answered; every client received its log exactly, in order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import msgspec

from questlog.events.schema import Recorded, RewardGranted, TaskStepCompleted


class LogCheck(msgspec.Struct):
    players: int = 0
    events: int = 0
    steps_completed: int = 0
    rewards_granted: int = 0
    not_dense: int = 0  # players whose versions are not 1..n
    duplicate_rewards: int = 0  # steps with more than one reward.granted
    missing_rewards: int = 0  # completed steps without a reward.granted
    lost_acknowledged: int = 0  # acknowledged commands whose event is not in the log at that version
    client_gaps: int = 0  # clients whose received versions are not exactly contiguous
    client_missed: int = 0  # events in the log a still-connected client never received
    problems: list[str] = []

    @property
    def ok(self) -> bool:
        return not (
            self.not_dense
            or self.duplicate_rewards
            or self.missing_rewards
            or self.lost_acknowledged
            or self.client_gaps
            or self.client_missed
        )

    def note(self, text: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(text)


def check_player(check: LogCheck, player_id: str, events: list[Recorded]) -> None:
    check.players += 1
    check.events += len(events)
    if [e.version for e in events] != list(range(1, len(events) + 1)):
        check.not_dense += 1
        check.note(f"{player_id}: versions not dense")
    steps = Counter((e.event.task_id, e.event.step) for e in events if isinstance(e.event, TaskStepCompleted))
    rewards = Counter((e.event.task_id, e.event.step) for e in events if isinstance(e.event, RewardGranted))
    check.steps_completed += sum(steps.values())
    check.rewards_granted += sum(rewards.values())
    for step, n in rewards.items():
        if n > 1:
            check.duplicate_rewards += n - 1
            check.note(f"{player_id}: step {step} rewarded {n} times")
    for step in steps:
        if step not in rewards:
            check.missing_rewards += 1
            check.note(f"{player_id}: step {step} completed without a reward")


def check_acknowledged(check: LogCheck, logs: dict[str, list[Recorded]], acked: Iterable[tuple[str, str, int]]) -> None:
    """Every success the gateway answered names a version; that version's event carries the command id."""
    for player_id, command_id, version in acked:
        events = logs.get(player_id, [])
        at = events[version - 1] if 0 < version <= len(events) else None
        if at is None or at.command_id != command_id:
            check.lost_acknowledged += 1
            check.note(f"{player_id}: acknowledged {command_id} not at version {version}")


def check_received(check: LogCheck, player_id: str, received: list[int], log: list[Recorded], first: int = 1) -> None:
    """A client's versions are contiguous from `first` and reach the end of the log."""
    expected = list(range(first, first + len(received)))
    if received != expected:
        check.client_gaps += 1
        check.note(f"{player_id}: client versions not contiguous")
    last = received[-1] if received else first - 1
    if log and last < log[-1].version:
        check.client_missed += log[-1].version - last
        check.note(f"{player_id}: client stopped at {last}, log at {log[-1].version}")
