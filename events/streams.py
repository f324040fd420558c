"""Stream and bucket definitions, created or updated idempotently at start-up."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import msgspec
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, KeyValueConfig, RePublish, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import APIError, NotFoundError

from .subjects import EVENTS_WILDCARD, LIVE_REPUBLISH

TIMER_SUBJECTS = "timers.>"
DEAD_LETTER_SUBJECTS = "deadletter.>"
AUDIT_SUBJECTS = "audit.>"
# How long the TIMERS stream drops a repeated timer (same Nats-Msg-Id).
TIMERS_DUPLICATE_WINDOW = timedelta(hours=1)


class StreamNames(msgspec.Struct, frozen=True):
    """The names of questlog's streams and snapshots bucket; a prefix lets systems share one NATS."""

    prefix: str = ""

    @property
    def events(self) -> str:
        return f"{self.prefix}EVENTS"

    @property
    def timers(self) -> str:
        return f"{self.prefix}TIMERS"

    @property
    def dead_letters(self) -> str:
        return f"{self.prefix}DEADLETTER"

    @property
    def audit(self) -> str:
        return f"{self.prefix}AUDIT"

    @property
    def snapshots(self) -> str:
        return f"{self.prefix}snapshots"


def stream_configs(names: StreamNames, replicas: int) -> list[StreamConfig]:
    return [
        # The log: immutable (no delete, no purge), atomic batches, fast direct reads.
        StreamConfig(
            name=names.events,
            subjects=[EVENTS_WILDCARD],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.NEW,
            num_replicas=replicas,
            duplicate_window=timedelta(minutes=2).total_seconds(),
            allow_atomic=True,
            allow_direct=True,
            deny_delete=True,
            deny_purge=True,
            # Live delivery: only events the stream stored are republished. A core
            # subscription on players.<id>.events.> would also see appends the
            # server refused (a lost OCC race, a failed batch): never use one.
            republish=RePublish(src=EVENTS_WILDCARD, dest=LIVE_REPUBLISH),
        ),
        # Durable timers: one scheduled message per due step (processor). Limits, not
        # work-queue retention, so operators and tests may add their own consumers.
        StreamConfig(
            name=names.timers,
            subjects=[TIMER_SUBJECTS],
            retention=RetentionPolicy.LIMITS,
            max_age=timedelta(days=30).total_seconds(),
            # fired timers pile up on timers.due.<player>; only the newest matter
            max_msgs_per_subject=64,
            storage=StorageType.FILE,
            num_replicas=replicas,
            duplicate_window=TIMERS_DUPLICATE_WINDOW.total_seconds(),
            allow_msg_schedules=True,
        ),
        # Messages a service gave up on after its max deliveries, kept for operators.
        StreamConfig(
            name=names.dead_letters,
            subjects=[DEAD_LETTER_SUBJECTS],
            storage=StorageType.FILE,
            num_replicas=replicas,
            max_age=timedelta(days=14).total_seconds(),
        ),
        # Every admin call, reads included, naming the admin.
        StreamConfig(
            name=names.audit,
            subjects=[AUDIT_SUBJECTS],
            storage=StorageType.FILE,
            num_replicas=replicas,
            max_age=timedelta(days=365).total_seconds(),
        ),
    ]


class StreamMismatch(RuntimeError):
    """An existing stream's configuration cannot be updated to this code's definition."""


async def ensure_streams(js: JetStreamContext, names: StreamNames, replicas: int) -> None:
    """Create every stream and bucket, or update it to this code's definition."""
    for config in stream_configs(names, replicas):
        try:
            await js.stream_info(config.name or "")
        except NotFoundError:
            await js.add_stream(config)
        else:
            try:
                await js.update_stream(config)
            except APIError as exc:
                raise StreamMismatch(
                    f"stream {config.name} exists with settings this version cannot change "
                    f"({exc.description}); migrate or remove it (see docs/operations.md)"
                ) from None
    await _ensure_snapshots_bucket(js, names.snapshots, replicas)


async def _ensure_snapshots_bucket(js: JetStreamContext, bucket: str, replicas: int) -> None:
    """Gets by direct get: through the API, every missing key (a player never snapshotted,
    loaded once by each service) is an error answer plus an API advisory on the server."""
    config = KeyValueConfig(bucket=bucket, history=1, replicas=replicas, storage=StorageType.FILE, direct=True)
    try:
        await js.create_key_value(config)
    except APIError:
        name = f"KV_{bucket}"
        existing = (await js.stream_info(name)).config
        if existing.allow_direct:
            raise
        # a bucket made before direct gets: switch them on, the rest as it was
        await js.update_stream(dataclasses.replace(existing, allow_direct=True))
