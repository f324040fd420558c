"""When a queue next needs a service, read off the state (the sweep's `due` read model)."""

from __future__ import annotations

from datetime import timedelta

from questlog.projections.due import attention_at, next_timer
from questlog.services.rules.commands import Configure, Enqueue, Pause
from questlog.services.rules.scheduling import advance, complete_step

from . import T0, World


def test_attention_follows_the_queue_through_a_task() -> None:
    w = World()
    assert attention_at(w.state) is None, "no player yet"
    w.send(Configure(command_id=w.next_id(), auto_start=False))
    w.send(Enqueue(command_id=w.next_id(), activity="harvesting", target="oak_log", quantity=2))
    assert attention_at(w.state) is None, "auto start off: waits for the player"
    w.send(Configure(command_id=w.next_id(), auto_start=True))
    assert attention_at(w.state) == w.state.updated_at, "a task may start: the processor is due now"
    w.record(advance(w.state, T0, w.rules), "advance")
    timer = next_timer(w.state)
    assert timer is not None and attention_at(w.state) == timer.due_at, "running: the next step's time"
    w.record(complete_step(w.state, timer.task_id, 1, 1, timer.due_at), "timer")
    assert attention_at(w.state) == timer.due_at, "a step completed and not rewarded: owed since then"
    w.run(60)
    assert w.state.current is None and attention_at(w.state) is None, "done: nothing due"


def test_a_paused_queue_needs_nobody() -> None:
    w = World()
    w.send(Enqueue(command_id=w.next_id(), activity="harvesting", target="oak_log", quantity=2))
    w.run(1)
    assert attention_at(w.state) is not None
    w.send(Pause(command_id=w.next_id()))
    assert attention_at(w.state) is None
    assert w.clock.now() - T0 < timedelta(seconds=2)
