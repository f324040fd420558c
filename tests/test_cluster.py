"""A 3-node NATS cluster on loopback, R3 streams, the stream leader killed with -9 under load.

What must hold: every append the store acknowledged is in the log exactly
once with dense versions; appends and a durable consumer carry on while the
node is down; the restarted node rejoins and its replica catches up.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from questlog.events.errors import AppendFailed, ConcurrencyConflict, DuplicateAppend
from questlog.events.schema import NewEvent, QueuePaused, Recorded
from questlog.events.store import EventStore, Position
from questlog.events.streams import ensure_streams
from questlog.events.subjects import EVENTS_WILDCARD
from questlog.services.runtime.consumer import ConsumerSpec, ensure_consumer, run_consumer
from questlog.services.runtime.settings import Settings, load_settings

from .cluster import Cluster, replicas_current, until

pytestmark = pytest.mark.slow

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
PLAYERS = 4
DEADLINE_S = 40.0


class Writer:
    """One player's writer: appends one event after another, each retried until acknowledged.

    Timeouts and no-responders during the fail-over are retried with the same
    command id and expected position, so a retry of an append that did land is
    recognised by the store (DuplicateAppend) instead of appending twice.
    """

    def __init__(self, store: EventStore, player_id: str, progress: Callable[[], None]) -> None:
        self.store, self.player_id, self.progress = store, player_id, progress
        self.acked: list[Recorded] = []
        self.retries = 0

    async def run(self, stop: asyncio.Event) -> None:
        pos = Position()
        while not stop.is_set():
            cid = uuid.uuid4().hex
            event = [NewEvent(QueuePaused(reason=cid), NOW)]
            while True:
                try:
                    recs = await self.store.append(self.player_id, event, expected=pos, command_id=cid)
                except DuplicateAppend as dup:
                    recs = dup.landed
                except (TimeoutError, ConcurrencyConflict, AppendFailed, NatsError):
                    # Only this writer appends to this player, so a conflict is our own
                    # earlier attempt having landed, seen through a replica that is
                    # behind: retry the same command until the store recognises it.
                    self.retries += 1
                    await asyncio.sleep(0.05)  # back-off between retries, not synchronisation
                    continue
                break
            self.acked.extend(recs)
            pos = Position(recs[-1].version, recs[-1].seq)
            self.progress()


class Load:
    """Writers for several players, and a way to await `n` more acknowledged appends."""

    def __init__(self, store: EventStore) -> None:
        self.writers = [Writer(store, f"cl-{uuid.uuid4().hex[:8]}", self._progress) for _ in range(PLAYERS)]
        self.stop = asyncio.Event()
        self._count = 0
        self._waiters: list[tuple[int, asyncio.Event]] = []
        self.tasks: list[asyncio.Task[None]] = []

    def _progress(self) -> None:
        self._count += 1
        for target, event in self._waiters:
            if self._count >= target:
                event.set()

    @property
    def acked(self) -> int:
        return self._count

    def start(self) -> None:
        self.tasks = [asyncio.create_task(w.run(self.stop)) for w in self.writers]

    async def more(self, n: int, what: str) -> None:
        event = asyncio.Event()
        self._waiters.append((self._count + n, event))
        if self._count >= self._waiters[-1][0]:
            event.set()
        try:
            await asyncio.wait_for(event.wait(), DEADLINE_S)
        except TimeoutError:
            raise AssertionError(f"appends stalled: {what} (acked {self._count})") from None

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.wait_for(asyncio.gather(*self.tasks), DEADLINE_S)


@pytest_asyncio.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path)
    await c.start()
    try:
        yield c
    finally:
        await c.stop()


@pytest_asyncio.fixture
async def client(cluster: Cluster) -> AsyncIterator[NATS]:
    nc = await nats.connect(
        servers=cluster.urls, max_reconnect_attempts=-1, reconnect_time_wait=0.1, name="cluster-test"
    )
    try:
        yield nc
    finally:
        await nc.close()


async def test_r3_stream_survives_kill_9_of_the_leader_under_load(
    cluster: Cluster, client: NATS, tmp_path: Path
) -> None:
    t0 = time.monotonic()
    phases: list[str] = []

    def phase(name: str) -> None:
        phases.append(f"{name} {time.monotonic() - t0:.1f}s")

    settings: Settings = load_settings({}, replicas=3, stream_prefix="CL", data_dir=str(tmp_path / "data"))
    js = client.jetstream()

    async def jetstream_ready() -> bool:  # the meta leader is elected some time after "Server is ready"
        try:
            await js.account_info()
        except (TimeoutError, NatsError):
            return False
        return True

    await until(jetstream_ready, "a JetStream meta leader")
    phase("jetstream")
    await ensure_streams(js, settings.streams, settings.replicas)
    phase("streams")
    info = await js.stream_info(settings.streams.events)
    assert info.config.num_replicas == 3

    store = EventStore(client, settings.streams.events, timeout=2.0)
    load = Load(store)

    # A durable consumer, as every service runs one, reading along through the fail-over.
    handled: set[int] = set()

    async def handler(msg: Msg) -> None:
        handled.add(msg.metadata.sequence.stream)

    spec = ConsumerSpec(durable="cluster-test", stream=settings.streams.events, filter_subjects=[EVENTS_WILDCARD])

    async def consumer_created() -> bool:  # an R3 consumer's raft group may still be electing
        try:
            await ensure_consumer(js, spec)
        except (TimeoutError, NatsError):
            return False
        return True

    await until(consumer_created, "the durable consumer to be created")
    phase("consumer")
    consumer_stop = asyncio.Event()
    consumer = asyncio.create_task(run_consumer(client, spec, handler, consumer_stop, wait_s=0.5))

    try:
        load.start()
        await load.more(100, "before the kill")

        info = await js.stream_info(settings.streams.events)
        leader = info.cluster.leader if info.cluster else None
        assert leader in cluster.names
        phase("kill")
        killed = await cluster.kill(leader)
        at_kill = load.acked
        await load.more(100, "while the leader is down")
        assert load.acked >= at_kill + 100, "appends carried on with one node down"

        phase("restart")
        await cluster.restart(killed)
        await load.more(100, "after the node restarted")
        await load.finish()

        async def rejoined() -> bool:  # raft catch-up has no client-visible event
            try:
                info = await js.stream_info(settings.streams.events)
            except (TimeoutError, NatsError):
                return False
            return replicas_current(info, cluster.names)

        phase("stopped")
        await until(rejoined, f"{leader} to rejoin with a current replica")
        phase("rejoined")

        # Every acknowledged append is in the log exactly once, versions dense.
        for w in load.writers:
            log = await store.read(w.player_id)
            assert [r.version for r in log] == list(range(1, len(log) + 1)), "dense versions"
            assert len({r.command_id for r in log}) == len(log), "no command landed twice"
            assert [(r.version, r.seq, r.command_id) for r in w.acked] == [
                (r.version, r.seq, r.command_id) for r in log
            ]

        # A read through the restarted node sees the whole log too.
        restarted = await nats.connect(cluster.urls[killed], name="cluster-test-restarted")
        try:
            again = EventStore(restarted, settings.streams.events)
            for w in load.writers:
                assert [r.seq for r in await again.read(w.player_id)] == [r.seq for r in w.acked]
        finally:
            await restarted.close()

        # The durable consumer carried on and saw every acknowledged event.
        wanted = {r.seq for w in load.writers for r in w.acked}

        async def consumer_caught_up() -> bool:
            if consumer.done():
                consumer.result()  # raises what stopped it
                raise AssertionError("the consumer returned before it was stopped")
            return wanted <= handled

        await until(consumer_caught_up, "the durable consumer to handle every event")
        consumer_stop.set()
        await asyncio.wait_for(consumer, 10)
    finally:  # a failure above must not leave writers or the consumer running against stopped servers
        load.stop.set()
        consumer_stop.set()
        pending = [t for t in (*load.tasks, consumer) if not t.done()]
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    phase("consumed")
    retries = sum(w.retries for w in load.writers)
    print(f"\nacked {load.acked} appends; retries {retries}; killed {leader}; " + ", ".join(phases))
