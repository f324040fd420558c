"""`task.progress`: the ephemeral notification that follows `task.started` and `task.step_completed`.

`{task_id, step, steps, eta, step_seconds, step_eta?}` (no version; never
replayed): `step` steps of `steps` are done; `eta` is when the task should
finish and `step_eta` when the next step falls due, both counted from the
event's domain time (the start, or the step's due time) with the task's
`step_seconds`. A pause moves both later; the next event carries the new times.

`task.step_completed` does not say how many steps the task has: the tracker
learns that from `task.started`. A session that resumed in the middle of a
task never saw its start; for that task the session asks the queue once
(`learn`), then the tracker knows it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec

from questlog.events.schema import (
    QueueCleared,
    Recorded,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskStarted,
    TaskStepCompleted,
)
from questlog.services.contract.protocol import rfc3339

METHOD = "task.progress"


class _Shape(msgspec.Struct, frozen=True):
    steps: int
    step_seconds: float
    step: int = 0  # steps done, as far as this session has seen


class ProgressTracker:
    """What one session knows of its player's running task(s), to compute `task.progress`."""

    def __init__(self) -> None:
        self._tasks: dict[str, _Shape] = {}

    def after(self, rec: Recorded) -> dict[str, Any] | None:
        """The `task.progress` params this event implies; None if none (or the task is unknown)."""
        e = rec.event
        if isinstance(e, TaskStarted):
            known = self._tasks.get(e.task_id)
            if e.attempt > 1 and known is None:
                return None  # a retry resumes from steps this session has not seen: `unknown` says so
            step = known.step if known is not None else 0
            self._tasks[e.task_id] = _Shape(e.steps, e.step_seconds, step)
            return self._params(e.task_id, rec.occurred_at)
        if isinstance(e, TaskStepCompleted):
            known = self._tasks.get(e.task_id)
            if known is None:
                return None
            self._tasks[e.task_id] = msgspec.structs.replace(known, step=e.step)
            return self._params(e.task_id, rec.occurred_at)
        if isinstance(e, TaskCompleted | TaskFailed | TaskCancelled):
            self._tasks.pop(e.task_id, None)
        elif isinstance(e, QueueCleared):
            for task_id in e.task_ids:
                self._tasks.pop(task_id, None)
        return None

    def unknown(self, rec: Recorded) -> str | None:
        """The task id when this event needs progress but the tracker does not know the task."""
        e = rec.event
        if isinstance(e, TaskStepCompleted | TaskStarted) and e.task_id not in self._tasks:
            return e.task_id
        return None

    def learn(self, rec: Recorded, current: dict[str, Any] | None) -> dict[str, Any] | None:
        """Learn the task from `queue.get`'s `current`, then the params for `rec` (None if it is gone)."""
        e = rec.event
        assert isinstance(e, TaskStepCompleted | TaskStarted)
        if current is None or current.get("task_id") != e.task_id:
            return None
        step = e.step if isinstance(e, TaskStepCompleted) else int(current.get("steps_done", 0))
        self._tasks[e.task_id] = _Shape(int(current["quantity"]), float(current["step_seconds"]), step)
        return self._params(e.task_id, rec.occurred_at)

    def _params(self, task_id: str, at: datetime) -> dict[str, Any]:
        shape = self._tasks[task_id]
        left = max(0, shape.steps - shape.step)
        out: dict[str, Any] = {
            "task_id": task_id,
            "step": shape.step,
            "steps": shape.steps,
            "eta": rfc3339(at + timedelta(seconds=shape.step_seconds * left)),
            "step_seconds": shape.step_seconds,
        }
        if left:
            out["step_eta"] = rfc3339(at + timedelta(seconds=shape.step_seconds))
        return out
