"""The result file every scenario writes: figures, targets met or missed, the machine."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from questlog.projections.views import iso

from .procfs import Machine, load_average, machine

DEFAULT_DIR = "bench-results"


class Target(msgspec.Struct, frozen=True):
    """One target a scenario promises, against the figure this run measured."""

    name: str
    goal: str  # e.g. "<= 50 ms"
    value: float
    met: bool


def at_most(name: str, value: float, limit: float, unit: str) -> Target:
    return Target(name, f"< {limit:g} {unit}", round(value, 3), value < limit)


def at_least(name: str, value: float, floor: float, unit: str = "") -> Target:
    return Target(name, f">= {floor:g} {unit}".strip(), round(value, 3), value >= floor)


class BenchResult(msgspec.Struct, kw_only=True):
    scenario: str
    command: str
    started_at: str
    finished_at: str
    machine: Machine
    parameters: dict[str, Any]
    figures: Any  # the scenario's own Struct
    targets: list[Target] = []
    checks_passed: bool = True
    load_average_before: float = 0.0  # 1-minute load average: was someone else using the machine?
    load_average_after: float = 0.0
    notes: list[str] = []


def now_iso() -> str:
    return iso(datetime.now(UTC))


def new_result(scenario: str, command: str, parameters: dict[str, Any]) -> BenchResult:
    return BenchResult(
        scenario=scenario,
        command=command,
        started_at=now_iso(),
        finished_at="",
        machine=machine(),
        parameters=parameters,
        figures=None,
        load_average_before=load_average(),
    )


def write_result(result: BenchResult, out_dir: str | Path = DEFAULT_DIR) -> Path:
    """`<out_dir>/<scenario>-<UTC timestamp>.json`, pretty-printed for people and diffs."""
    result.finished_at = result.finished_at or now_iso()
    result.load_average_after = load_average()
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = directory / f"{result.scenario}-{stamp}.json"
    path.write_bytes(msgspec.json.format(msgspec.json.encode(result), indent=2) + b"\n")
    return path
