"""The one consumer runtime every reacting service uses.

A durable pull consumer shared by every instance of a service (so N instances
split the work); within a fetched batch one player's messages are handled in
order and different players concurrently; ack only after the effect,
redelivery with backoff on errors, and a dead-letter stream once a message used
up its deliveries. Setting `stop` drains: no new fetch, the in-flight messages
finish and are acked.

Redelivery and several instances mean a handler can see a player's messages
out of order or twice, so every handler is state-based: it loads the player's
current state and decides what is due, which makes order and repeats harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import msgspec
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

log = logging.getLogger("questlog.consumer")

Handler = Callable[[Msg], Awaitable[None]]


class ConsumerSpec(msgspec.Struct, frozen=True, kw_only=True):
    durable: str
    stream: str
    filter_subjects: list[str]
    max_deliver: int = 10
    ack_wait_s: float = 30.0
    backoff_s: tuple[float, ...] = (0.1, 0.5, 2.0, 5.0, 10.0, 30.0)
    batch: int = 128
    max_ack_pending: int = 4096
    dead_letter_subject: str = "deadletter"

    def config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            filter_subjects=list(self.filter_subjects),
            max_deliver=self.max_deliver,
            ack_wait=self.ack_wait_s,
            max_ack_pending=self.max_ack_pending,
        )


def player_key(msg: Msg) -> str:
    """Order key: the player token of `players.<id>.…` or `timers.due.<id>`."""
    parts = msg.subject.split(".")
    return parts[1] if parts[0] == "players" else parts[-1]


async def ensure_consumer(js: JetStreamContext, spec: ConsumerSpec) -> None:
    """Create the durable, or update it in place to this spec (same name)."""
    await js.add_consumer(spec.stream, spec.config())


async def run_consumer(
    js: JetStreamContext,
    spec: ConsumerSpec,
    handler: Handler,
    stop: asyncio.Event,
    *,
    key: Callable[[Msg], str] = player_key,
    fetch_timeout: float = 1.0,
) -> None:
    await ensure_consumer(js, spec)
    sub = await js.pull_subscribe_bind(durable=spec.durable, stream=spec.stream)
    try:
        while not stop.is_set():
            try:
                msgs = await sub.fetch(spec.batch, timeout=fetch_timeout)
            except (NatsTimeout, asyncio.TimeoutError):
                continue
            except NatsError as exc:  # reconnecting, a leader election: wait, then fetch again
                log.warning("fetch failed; retrying", extra={"consumer": spec.durable, "error": repr(exc)})
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), fetch_timeout)
                continue
            groups: dict[str, list[Msg]] = {}
            for msg in msgs:
                groups.setdefault(key(msg), []).append(msg)
            await asyncio.gather(*(_in_order(js, spec, handler, group) for group in groups.values()))
    finally:
        await sub.unsubscribe()


async def _in_order(js: JetStreamContext, spec: ConsumerSpec, handler: Handler, msgs: list[Msg]) -> None:
    failed = False
    for msg in msgs:
        if failed:
            # keep the player's order: what follows a failure comes back after it
            await msg.nak(delay=spec.backoff_s[0])
            continue
        try:
            await handler(msg)
        except Exception as exc:
            failed = True
            await _failed(js, spec, msg, exc)
        else:
            await msg.ack()


async def _failed(js: JetStreamContext, spec: ConsumerSpec, msg: Msg, exc: Exception) -> None:
    delivered = msg.metadata.num_delivered
    if delivered >= spec.max_deliver:
        log.error(
            "giving up on a message after %d deliveries; sent to the dead-letter stream",
            delivered,
            extra={"consumer": spec.durable, "subject": msg.subject, "error": repr(exc)},
        )
        headers = dict(msg.headers or {})
        headers.update(
            {
                "Questlog-Original-Subject": msg.subject,
                "Questlog-Original-Sequence": str(msg.metadata.sequence.stream),
                "Questlog-Consumer": spec.durable,
                "Questlog-Error": repr(exc)[:500],
            }
        )
        headers.pop("Nats-Msg-Id", None)
        await js.publish(f"{spec.dead_letter_subject}.{spec.durable}", msg.data, headers=headers)
        await msg.term()
        return
    delay = spec.backoff_s[min(delivered - 1, len(spec.backoff_s) - 1)]
    log.warning(
        "handler failed; redelivery in %.1fs",
        delay,
        extra={"consumer": spec.durable, "subject": msg.subject, "delivered": delivered, "error": repr(exc)},
    )
    await msg.nak(delay=delay)
