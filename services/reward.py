"""The reward service: each completed step becomes exactly one `reward.granted`.

Exactly once follows from the state, not from delivery: the engine grants a
step only if the player's log has no reward for it yet, and the append's OCC
check makes two instances (or a redelivery) agree on one answer.

The processor settles each step it completes in its very next decision
(`scheduling.catch_up`), and comes back to it after a crash (the timer or event
it was handling is redelivered); so a step it wrote is left to it, and this
service rewards the others (anything else that completes steps, or a log
written before that rule).
"""

from __future__ import annotations

import asyncio

from nats.aio.msg import Msg

from questlog.events.schema import TaskStepCompleted
from questlog.events.store import decode_stored
from questlog.events.subjects import events_of_type
from questlog.projections.repository import PlayerRepository
from questlog.services.rules.catalog import Rules, load_rules
from questlog.services.runtime.connections import Wiring
from questlog.services.runtime.consumer import ConsumerSpec, run_consumer

from .decision_loop import DecisionLoop
from .processor import SETTLES_ITS_STEPS
from .rules.rewards import settle_step


class RewardService:
    def __init__(self, wiring: Wiring, rules: Rules, repo: PlayerRepository) -> None:
        self.rules = rules
        self.loop = DecisionLoop(wiring.store, repo)
        self.registry = wiring.store.registry

    async def on_step(self, msg: Msg) -> None:
        rec = decode_stored(msg, self.registry)
        if (rec.causation_id or "").startswith(SETTLES_ITS_STEPS):
            return
        step = rec.event
        assert isinstance(step, TaskStepCompleted)
        await self.loop.run(
            rec.player_id,
            lambda s: (settle_step(s, step.task_id, step.step, self.rules), None),
            causation_id=f"reward:{step.task_id}:{step.step}",
            fresh=True,
            after_seq=rec.seq,
        )


async def serve_reward(wiring: Wiring, stop: asyncio.Event, *, rules: Rules | None = None) -> None:
    rules = rules or load_rules(time_scale=wiring.settings.time_scale)
    service = RewardService(wiring, rules, await wiring.players())
    spec = ConsumerSpec.of_service(wiring.settings, "reward", [events_of_type("task.step_completed")])
    await run_consumer(wiring.nc, spec, service.on_step, stop, ready=wiring.ready("reward"))
