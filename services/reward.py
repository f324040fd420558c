"""The reward service: each completed step becomes exactly one `reward.granted`.

Exactly once follows from the state, not from delivery: the engine grants a
step only if the player's log has no reward for it yet, and the append's OCC
check makes two instances (or a redelivery) agree on one answer.

The processor settles a step in the same append that completes it, in the
decision right after it (`engine.catch_up`); so a step with more of its
append after it is settled already, and only one appended alone (a catch-up
cut at its limit, an older processor) is this service's to reward.
"""

from __future__ import annotations

import asyncio

from nats.aio.msg import Msg

from questlog.events.schema import TaskStepCompleted
from questlog.events.store import decode_stored, ends_its_append
from questlog.events.subjects import events_of_type
from questlog.projections.repository import PlayerRepository
from questlog.services.rules.catalog import Rules, load_rules
from questlog.services.runtime.connections import Wiring
from questlog.services.runtime.consumer import ConsumerSpec, run_consumer

from .decision_loop import DecisionLoop
from .rules import engine


class RewardService:
    def __init__(self, wiring: Wiring, rules: Rules, repo: PlayerRepository) -> None:
        self.rules = rules
        self.loop = DecisionLoop(wiring.store, repo)
        self.registry = wiring.store.registry

    async def on_step(self, msg: Msg) -> None:
        if not ends_its_append(msg.headers or {}):
            return
        rec = decode_stored(msg, self.registry)
        step = rec.event
        assert isinstance(step, TaskStepCompleted)
        await self.loop.run(
            rec.player_id,
            lambda s: (engine.settle_step(s, step.task_id, step.step, self.rules), None),
            causation_id=f"reward:{step.task_id}:{step.step}",
            fresh=True,
            after_seq=rec.seq,
        )


async def serve_reward(wiring: Wiring, stop: asyncio.Event, *, rules: Rules | None = None) -> None:
    rules = rules or load_rules(time_scale=wiring.settings.time_scale)
    service = RewardService(wiring, rules, await wiring.players())
    spec = ConsumerSpec.of_service(wiring.settings, "reward", [events_of_type("task.step_completed")])
    await run_consumer(wiring.nc, spec, service.on_step, stop, ready=wiring.ready("reward"))
