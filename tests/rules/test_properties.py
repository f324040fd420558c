"""Property tests: random command sequences interleaved with the engine keep every invariant."""

from __future__ import annotations

import contextlib
import random
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from questlog.projections.player import fold
from questlog.projections.state import PlayerState
from questlog.services.rules.commands import (
    AdminGrant,
    Cancel,
    Clear,
    Command,
    Configure,
    Enqueue,
    Pause,
    Reorder,
    Resume,
)
from questlog.services.rules.errors import RulesError

from . import World

TARGETS = [
    ("harvesting", "oak_log"),
    ("harvesting", "stone"),
    ("harvesting", "trout"),
    ("harvesting", "willow_log"),  # level too low at first
    ("crafting", "plank"),
    ("crafting", "campfire"),
    ("crafting", "cooked_trout"),
    ("combat", "rat"),
    ("combat", "goblin"),
    ("mining", "gold"),  # unknown
]


def enqueue_op(most: int) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.tuples(st.just("enqueue"), st.sampled_from(TARGETS), st.integers(1, most), st.integers(0, 3))


def run_op(longest: float) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.tuples(st.just("run"), st.floats(0, longest))


# enqueues and engine runs weigh more than the other commands (one_of picks uniformly)
op = st.one_of(
    enqueue_op(1),
    enqueue_op(3),
    enqueue_op(5),
    run_op(5),
    run_op(40),
    st.tuples(st.just("cancel"), st.integers(0, 20)),
    st.tuples(st.just("reorder"), st.integers(0, 2**16), st.booleans()),
    st.tuples(st.just("clear")),
    st.tuples(st.just("pause")),
    st.tuples(st.just("resume")),
    st.tuples(
        st.just("configure"),
        st.one_of(st.none(), st.integers(0, 6)),
        st.one_of(st.none(), st.booleans()),
        st.sampled_from([None, "fifo", "priority", "lifo"]),
    ),
    st.tuples(st.just("grant"), st.sampled_from(["oak_log", "trout", "stone"]), st.integers(1, 10)),
    st.tuples(st.just("repeat"), st.integers(0, 50)),
    run_op(120),
)


def check_invariants(w: World) -> None:
    s = w.state
    assert len(s.queued) <= s.config.max_size
    assert all(t.status == "queued" for t in s.queued)
    ids = [t.task_id for t in s.queued] + ([s.current.task_id] if s.current else [])
    assert len(ids) == len(set(ids))  # at most one running, no task twice
    assert all(q > 0 for q in s.inventory.values())
    if s.current is not None:
        assert all(q >= 0 for q in s.current.reserved.values())
        assert s.current.rewarded <= s.current.steps_done <= s.current.quantity
    assert [r.version for r in w.log] == list(range(1, len(w.log) + 1))
    assert s.version == len(w.log)


def build(w: World, o: tuple[Any, ...], sent: list[tuple[Command, dict[str, Any]]]) -> Command | None:
    kind = o[0]
    cid = w.next_id()
    s = w.state
    known = [t.task_id for t in s.queued] + ([s.current.task_id] if s.current else []) + list(s.finished)
    if kind == "enqueue":
        (activity, target), quantity, priority = o[1], o[2], o[3]
        return Enqueue(command_id=cid, activity=activity, target=target, quantity=quantity, priority=priority)
    if kind == "cancel":
        task_id = known[o[1] % len(known)] if known and o[1] < 15 else "t-missing"
        return Cancel(command_id=cid, task_id=task_id)
    if kind == "reorder":
        order = [t.task_id for t in s.queued]
        random.Random(o[1]).shuffle(order)
        if not o[2] and order:
            order = order[:-1]
        return Reorder(command_id=cid, order=order)
    if kind == "clear":
        return Clear(command_id=cid)
    if kind == "pause":
        return Pause(command_id=cid)
    if kind == "resume":
        return Resume(command_id=cid)
    if kind == "configure":
        return Configure(command_id=cid, max_size=o[1], auto_start=o[2], priority_mode=o[3])
    if kind == "grant":
        return AdminGrant(command_id=cid, player_id=s.player_id, reason="prop", items={o[1]: o[2]})
    if kind == "repeat":
        return sent[o[1] % len(sent)][0] if sent else None
    return None


def play(ops: list[tuple[Any, ...]]) -> World:
    w = World(player_id="p-prop")
    sent: list[tuple[Command, dict[str, Any]]] = []
    first: dict[str, dict[str, Any]] = {}
    for o in ops:
        if o[0] == "run":
            w.run(o[1])
            check_invariants(w)
            continue
        cmd = build(w, o, sent)
        if cmd is None:
            continue
        before: PlayerState = w.state
        repeat = cmd.command_id in first
        try:
            decision = w.send(cmd)
        except RulesError:
            assert w.state == before  # an invalid command changes nothing
            assert not repeat
            continue
        if repeat:
            assert decision.events == []
            assert decision.result == first[cmd.command_id]
            assert w.state == before
        else:
            assert decision.result["version"] == w.state.version
            first[cmd.command_id] = decision.result
            sent.append((cmd, decision.result))
            # the same command id a second time changes nothing
            again = w.send(cmd)
            assert again.events == [] and again.result == decision.result
        check_invariants(w)
    w.run(3600)
    check_invariants(w)
    return w


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, min_size=5, max_size=60))
def test_random_sequences_keep_the_invariants(ops: list[tuple[Any, ...]]) -> None:
    w = play(ops)
    # folding everything from scratch equals the incrementally built state
    assert fold(w.log, player_id=w.state.player_id) == w.state
    # folding from a mid-way snapshot too
    if len(w.log) > 2:
        mid = len(w.log) // 2
        assert fold(w.log[mid:], fold(w.log[:mid])) == w.state
    # every completed step is rewarded exactly once
    steps = Counter((r.event.task_id, r.event.step) for r in w.log if r.type == "task.step_completed")
    rewards = Counter((r.event.task_id, r.event.step) for r in w.log if r.type == "reward.granted")
    assert all(n == 1 for n in rewards.values())
    assert set(rewards) <= set(steps)
    if w.state.current is None or w.state.current.rewarded == w.state.current.steps_done:
        assert set(rewards) == set(steps)
    # a task never starts while another is current
    running: str | None = None
    for r in w.log:
        if r.type == "task.started":
            assert running in (None, r.event.task_id)
            running = r.event.task_id
        elif r.type in ("task.completed", "task.failed", "task.cancelled") and r.event.task_id == running:
            running = None


@settings(max_examples=50, deadline=None)
@given(st.lists(op, min_size=1, max_size=20), st.floats(1, 200))
def test_catch_up_after_downtime_matches_live(ops: list[tuple[Any, ...]], gap: float) -> None:
    """Commands only, then: ticking in small steps == one catch-up after a long absence."""
    cmds = [o for o in ops if o[0] != "run"]
    live = play_commands(cmds)
    late = play_commands(cmds)
    for _ in range(int(gap)):
        live.run(1.0)
    late.run(float(int(gap)))
    assert [(r.version, r.type, r.occurred_at, r.event) for r in live.log] == [
        (r.version, r.type, r.occurred_at, r.event) for r in late.log
    ]


def play_commands(ops: list[tuple[Any, ...]]) -> World:
    w = World(player_id="p-catch")
    sent: list[tuple[Command, dict[str, Any]]] = []
    for o in ops:
        cmd = build(w, o, sent)
        if cmd is None:
            continue
        with contextlib.suppress(RulesError):
            sent.append((cmd, w.send(cmd).result))
    return w
