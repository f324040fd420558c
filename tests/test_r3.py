"""R3: every service as a real subprocess on a 3-node NATS cluster, players through the gateway.

Two tests, each on a fresh cluster with R3 streams, every `questlog run <service>`
and one gateway as subprocesses, players speaking the protocol with QuestlogClient:

* fresh start, leader kill, frozen follower: (d) every service started at
  once on a fresh cluster before JetStream can be ready (the first node is
  up, the other two start right after the services); (a) the EVENTS stream
  leader, moved first to the gateway's node, killed with -9 while tasks run,
  then restarted; (b) the follower the reward service is connected to frozen
  with SIGSTOP for 3 s while players run.
* (c) every node stopped and started again (same ports and store dirs) while
  timers are pending: they fire afterwards and the tasks complete.

After each phase, for every player: each task reached an end, versions are
dense and every completed step has exactly one reward, every acknowledged
command is in the log at the version it answered, the client received exactly
the log's versions (no gap, no duplicate, none missing), and no service exited.
A failure names the logs: services under <tmp>/logs, nodes under <tmp>/nats/n*.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from questlog.events.schema import Recorded
from questlog.events.store import EventStore
from questlog.events.subjects import live_player_events
from questlog.gateway.auth import issue_token
from questlog.gateway.client import ConnectionLost, QuestlogClient
from questlog.services.bench.checks import LogCheck, check_acknowledged, check_player
from questlog.services.bench.stack import ServiceProcess
from questlog.services.cli.roster import services
from questlog.services.contract.protocol import INTERNAL_ERROR, RATE_LIMITED, RpcError
from questlog.services.runtime.embedded import free_port
from questlog.services.runtime.settings import Settings, load_settings

from .cluster import Cluster, all_current, leader_of, move_leader, stream_info, until
from .processes import service_env
from .servers import local_redis
from .watch import queue_idle

pytestmark = pytest.mark.slow

JWT_SECRET = "test-secret-test-secret-test-secret"  # what service_env gives the services
TIME_SCALE = 0.1  # a 3 s step takes 0.3 s: three tasks of three steps outlast a fail-over's start
PLAYERS = 12
TARGETS = ["oak_log", "stone", "copper_ore", "trout"]
RETRYABLE = {INTERNAL_ERROR, RATE_LIMITED}  # the protocol's "try again": same command id
IDLE_TIMEOUT_S = 45.0  # for every task to end after a phase's fault
CLIENT_TIMEOUT_S = 10.0  # for a client to receive the log's last event once the log is idle
FREEZE_S = 3.0


class Service(ServiceProcess):
    """`questlog run <service>`; the gateway on a port of its own. /readyz: ServiceProcess.ready."""

    def __init__(self, service: str, env: dict[str, str], log_dir: Path) -> None:
        self.http_port = free_port() if service == "gateway" else 0
        if self.http_port:
            env = {**env, "QUESTLOG_HTTP_PORT": str(self.http_port)}
        super().__init__(service, env, log_dir, health=True)

    async def ready(self, timeout: float = 90.0) -> Service:
        try:
            await super().ready(timeout)
        except TimeoutError:
            raise AssertionError(f"{self.service} not ready in {timeout:.0f} s (log {self.log_path})") from None
        return self


class System:
    def __init__(self, tmp: Path, redis_url: str, time_scale: float) -> None:
        self.tmp = tmp
        self.cluster = Cluster(tmp / "nats")
        self.log_dir = tmp / "logs"
        self.log_dir.mkdir(parents=True)
        self.settings: Settings = load_settings({}, jwt_secret=JWT_SECRET, replicas=3)
        env = service_env(
            self.cluster.seeds,
            redis_url,
            QUESTLOG_REPLICAS="3",
            QUESTLOG_TIME_SCALE=str(time_scale),
            QUESTLOG_STARTUP_TIMEOUT_S="90",
            QUESTLOG_SNAPSHOT_EVERY="16",  # loads from snapshots + later events, as in production
            QUESTLOG_DATA_DIR=str(tmp / "data"),
        )
        self.procs = [Service(name, env, self.log_dir) for name in services()]  # the gateway included
        self.gateway = next(p for p in self.procs if p.service == "gateway")
        self.ws_url = f"ws://127.0.0.1:{self.gateway.http_port}/ws"
        self.events = self.settings.streams.events
        self.nc: NATS | None = None
        self.store: EventStore | None = None
        self.stale_reads = 0  # reads the test got from a replica behind what it had been told of
        self.jetstream_after_s = 0.0

    async def start(self) -> None:
        """(d): every service at once on a fresh cluster, before JetStream can be ready: the
        services are launched when the first node is up, the other two right after them (the
        meta leader needs two nodes)."""
        first, *others = self.cluster.nodes
        await first.start()
        t0 = time.monotonic()
        await asyncio.gather(*(p.start() for p in self.procs))
        self.nc = await nats.connect(
            self.cluster.urls, max_reconnect_attempts=-1, reconnect_time_wait=0.1, name="r3-test"
        )
        assert not await jetstream_answers(self.nc), "premise: JetStream is not ready when the services start"
        await asyncio.gather(*(n.start() for n in others))
        await until(lambda: jetstream_answers(self.nc), "a JetStream meta leader", 60)
        self.jetstream_after_s = time.monotonic() - t0
        await asyncio.gather(*(p.ready() for p in self.procs))
        self.store = EventStore(self.nc, self.events)
        await leader_of(self.js, self.events)

    async def stop(self) -> None:
        # SIGKILL for whatever has not exited 30 s after SIGTERM
        await asyncio.gather(*(p.stop(30) for p in self.procs), return_exceptions=True)
        if self.nc is not None:
            with suppress(Exception):
                await asyncio.wait_for(self.nc.close(), 5)
        await self.cluster.stop()

    @property
    def js(self) -> JetStreamContext:
        """For polling cluster state: a short timeout, so a poll during an election is retried soon."""
        assert self.nc is not None
        return self.nc.jetstream(timeout=1.0)

    def exited(self) -> list[tuple[Service, int]]:
        return [(p, p.proc.returncode) for p in self.procs if p.proc is not None and p.proc.returncode is not None]

    @staticmethod
    def on_node(placement: dict[str, str], node: str) -> list[str]:
        """The services connected to `node` (from Cluster.clients)."""
        return sorted(n.removeprefix("questlog-") for n, at in placement.items() if at == node and n != "r3-test")

    def where(self) -> str:
        """Where to look: the logs, and what the services logged at warning or above."""
        lines = [f"service logs: {self.log_dir}", f"node logs: {self.tmp / 'nats'}/n*/nats-server.log"]
        for p in self.procs:
            said: Counter[str] = Counter()
            with suppress(OSError):
                for raw in p.log_path.read_text(errors="replace").splitlines():
                    try:
                        line = json.loads(raw)
                    except ValueError:
                        said[raw[:120]] += 1
                        continue
                    said[f"{line.get('level')}: {line.get('msg')}"] += 1
            if said:
                top = "; ".join(f"{n}× {m}" for m, n in said.most_common(4))
                lines.append(f"  {p.log_path.name}: {top}")
        return "\n".join(lines)


async def jetstream_answers(nc: NATS | None) -> bool:
    assert nc is not None
    try:
        await nc.jetstream(timeout=1.0).account_info()
    except (TimeoutError, nats.errors.Error):
        return False
    return True


@asynccontextmanager
async def r3_system(tmp: Path, time_scale: float = TIME_SCALE) -> AsyncIterator[System]:
    async with local_redis(tmp) as redis:
        system = System(tmp, redis.url, time_scale)
        try:
            await system.start()
            yield system
        finally:
            await system.stop()


class Marks(list[str]):
    """When each phase of a test began, for the report printed at its end."""

    def __init__(self) -> None:
        super().__init__()
        self.t0 = time.monotonic()

    def __call__(self, what: str) -> None:
        self.append(f"{what} {time.monotonic() - self.t0:.1f}s")


class Player:
    """One player's client, what it received, and its commands (retried with the same id)."""

    def __init__(self, player_id: str, client: QuestlogClient) -> None:
        self.id, self.client = player_id, client
        self.versions: list[int] = []
        self.acked: list[tuple[str, str, int]] = []
        self.retries = 0
        self._arrived = asyncio.Event()
        self._drain = asyncio.create_task(self._take())

    async def _take(self) -> None:
        while True:
            params = await self.client.events.get()
            self.versions.append(int(params["version"]))
            self._arrived.set()

    async def enqueue(self, command_id: str, target: str, quantity: int, timeout: float = 60.0) -> None:
        params = {"activity": "harvesting", "target": target, "quantity": quantity, "command_id": command_id}
        try:
            async with asyncio.timeout(timeout):
                while True:
                    try:
                        result = await self.client.call("queue.enqueue", params)
                    except RpcError as exc:
                        if exc.code not in RETRYABLE:
                            raise AssertionError(f"{self.id}: {command_id} refused: {exc.code} {exc.message}") from None
                    except (ConnectionLost, TimeoutError):
                        pass
                    else:
                        self.acked.append((self.id, command_id, int(result["version"])))
                        return
                    self.retries += 1
                    await asyncio.sleep(0.2)  # back-off before the retry, not synchronisation
        except TimeoutError:
            raise AssertionError(f"{self.id}: {command_id} not acknowledged in {timeout:.0f} s") from None

    async def reached(self, version: int, timeout: float) -> None:
        """Until the client received `version` (or the timeout; the caller compares what it got)."""
        with suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not self.versions or self.versions[-1] < version:
                    self._arrived.clear()
                    await self._arrived.wait()

    async def close(self) -> None:
        self._drain.cancel()
        await self.client.close()


async def connect_players(system: System, tag: str, http: aiohttp.ClientSession) -> list[Player]:
    async def one(i: int) -> Player:
        pid = f"r3{tag}-{i:02d}"
        token = issue_token(system.settings, pid)
        async with asyncio.timeout(60):
            while True:
                client = QuestlogClient(system.ws_url, token, call_timeout_s=15.0, backoff_max_s=1.0, http=http)
                try:
                    hello = await client.connect()  # reconnects by itself until a hello is answered
                except RpcError as exc:  # the hello's state query failed: a new client, the same token
                    assert exc.code in RETRYABLE, f"{pid}: hello refused: {exc.code} {exc.message}"
                    await asyncio.sleep(0.2)  # back-off before the retry, not synchronisation
                    continue
                assert hello["version"] == 0, f"{pid}: a new player starts at version 0: {hello}"
                return Player(pid, client)

    return list(await asyncio.gather(*(one(i) for i in range(PLAYERS))))


async def play(players: list[Player], phase: str, tasks: int, quantity: int = 3) -> None:
    """Each player enqueues `tasks` tasks one after another; the players at once."""

    async def one(k: int, p: Player) -> None:
        for i in range(tasks):
            await p.enqueue(f"{p.id}-{phase}{i}", TARGETS[(k + i) % len(TARGETS)], quantity)

    await asyncio.gather(*(one(k, p) for k, p in enumerate(players)))


async def logs_of(system: System, players: list[Player]) -> dict[str, list[Recorded]]:
    assert system.store is not None
    return {p.id: await system.store.read(p.id) for p in players}


async def log_until(
    system: System, player_id: str, done: Callable[[list[Recorded]], bool], timeout: float
) -> list[Recorded]:
    """The player's log once `done(log)` holds, re-read whenever an event of the player is stored.

    tests/watch.py's `until` for an R3 stream: a direct get may be answered by a
    follower that has not applied what the leader just republished, so a read
    that ends before the newest sequence a live message announced is read again.
    """
    nc, store = system.nc, system.store
    assert nc is not None and store is not None
    newest = 0
    changed = asyncio.Event()

    async def on_live(msg: Msg) -> None:
        nonlocal newest
        newest = max(newest, int((msg.headers or {}).get("Nats-Sequence", "0") or 0))
        changed.set()

    sub = await nc.subscribe(live_player_events(player_id), cb=on_live)
    await nc.flush()
    events: list[Recorded] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                changed.clear()
                events = await store.read(player_id)
                if events and events[-1].seq < newest:
                    system.stale_reads += 1
                    await asyncio.sleep(0.05)  # a follower catching up raises no event: polled
                    continue
                if done(events):
                    return events
                # Interest reaches the other nodes a moment after the subscription, so an
                # event stored in between is not announced: read again now and then too.
                with suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), 2.0)
    except TimeoutError:
        tail = [(e.version, e.type) for e in events[-8:]]
        raise AssertionError(f"{player_id}: condition not met in {timeout:.0f}s; last events {tail}") from None
    finally:
        await sub.unsubscribe()


def describe_client(p: Player, log: list[Recorded]) -> str:
    wanted = [r.version for r in log]
    got = p.versions
    dup = sorted(v for v, n in Counter(got).items() if n > 1)
    missing = sorted(set(wanted) - set(got))
    types = {r.version: r.type for r in log}
    return (
        f"{p.id}: client received {len(got)} events (last {got[-1] if got else None}), log has {len(wanted)}; "
        f"missing {[(v, types[v]) for v in missing][:6]}, duplicates {dup[:6]}, "
        f"out of order {got != sorted(got)}; reconnects {len(p.client.close_codes)} "
        f"(codes {p.client.close_codes[-4:]}), gaps repaired {p.client.gaps_repaired}"
    )


async def verify(system: System, players: list[Player], phase: str) -> dict[str, list[Recorded]]:
    """Every assertion of a phase, all checked, reported together with where the logs are."""
    assert system.nc is not None and system.store is not None
    problems: list[str] = []
    # no service exited (the tests kill nodes, never a service)
    problems += [f"{p.service} exited with {rc} (log {p.log_path})" for p, rc in system.exited()]

    # every task reaches an end: the log is re-read whenever an event is stored
    done = await asyncio.gather(
        *(log_until(system, p.id, queue_idle, timeout=IDLE_TIMEOUT_S) for p in players),
        return_exceptions=True,
    )
    problems += [f"not every task ended: {r}" for r in done if isinstance(r, BaseException)]

    # reads below are direct gets any replica answers: wait until none is behind
    try:
        await all_current(system.js, [system.events], system.cluster.names)
    except AssertionError as exc:
        problems.append(str(exc))
    logs = await logs_of(system, players)

    check = LogCheck()
    for p in players:
        check_player(check, p.id, logs[p.id])
    check_acknowledged(check, logs, [a for p in players for a in p.acked])
    if not check.ok:
        problems += check.problems

    # gap-free clients: exactly the log's versions, once each, in order
    await asyncio.gather(*(p.reached(logs[p.id][-1].version if logs[p.id] else 0, CLIENT_TIMEOUT_S) for p in players))
    problems += [describe_client(p, logs[p.id]) for p in players if p.versions != [r.version for r in logs[p.id]]]
    dead = await stream_info(system.js, system.settings.streams.dead_letters)
    if dead is not None and dead.state.messages:
        problems.append(f"{dead.state.messages} message(s) dead-lettered")
    assert not problems, f"phase {phase}:\n" + "\n".join(problems) + "\n" + system.where()
    return logs


async def test_fresh_start_all_at_once_then_leader_killed_then_follower_frozen(tmp_path: Path) -> None:
    mark = Marks()
    async with r3_system(tmp_path) as system, aiohttp.ClientSession() as http:
        # (d) every service was started at once on the fresh cluster; all became ready, none exited
        mark(f"ready (JetStream {system.jetstream_after_s:.1f}s after the launch)")
        players = await connect_players(system, "a", http)
        try:
            await verify_started(system)

            # (a) the EVENTS leader killed with -9 while tasks run, then restarted. The leader is
            # first moved to the gateway's node, so the kill also cuts the gateway's live feed.
            gateway_node = (await system.cluster.clients()).get("questlog-gateway")
            if gateway_node is not None:
                await move_leader(system.nc, system.events, gateway_node)
            await play(players, "a", tasks=3)
            running = [pid for pid, log in (await logs_of(system, players)).items() if not queue_idle(log)]
            assert running, "premise: tasks are running when the leader is killed"
            leader = await leader_of(system.js, system.events)
            on_it = system.on_node(await system.cluster.clients(), leader)
            mark(f"kill {leader} ({', '.join(on_it)})")
            killed = await system.cluster.kill(leader)
            new = await leader_of(system.js, system.events, other_than=leader)
            mark(f"{new} leads")
            await system.cluster.restart(killed)
            mark("restarted")
            await verify(system, players, f"(a) leader {leader} killed with -9 while {len(running)} queues ran")
            mark("(a) verified")

            # (b) a follower frozen for 3 s while players run: tasks in progress, commands sent
            # meanwhile. The frozen node is the reward service's (made a follower if it leads): its
            # reads go to the local replica, which the thaw leaves behind until it has caught up.
            placement = await system.cluster.clients()
            follower = placement.get("questlog-reward") or system.cluster.names[0]
            if await leader_of(system.js, system.events) == follower:
                await move_leader(system.nc, system.events, next(n for n in system.cluster.names if n != follower))
            on_it = system.on_node(placement, follower)
            await play(players, "b", tasks=1)
            mark(f"freeze {follower} ({', '.join(on_it)})")
            frozen = system.cluster.freeze(follower)
            during = asyncio.create_task(play(players, "b-frozen", tasks=2))
            await asyncio.sleep(FREEZE_S)  # the fault itself lasts this long: not synchronisation
            system.cluster.thaw(frozen)
            mark("thawed")
            await during
            await verify(system, players, f"(b) follower {follower} ({', '.join(on_it)}) frozen {FREEZE_S:.0f} s")
            mark("(b) verified")
        finally:
            await asyncio.gather(*(p.close() for p in players))
    retries = sum(p.retries for p in players)
    print(f"\nretries {retries}; stale reads seen by the test {system.stale_reads}; " + ", ".join(mark))


async def verify_started(system: System) -> None:
    """(d): every service became ready after being started before JetStream was; none exited."""
    exited = [f"{p.service} with {rc} (log {p.log_path})" for p, rc in system.exited()]
    assert not exited, f"exited at start-up: {exited}\n{system.where()}"
    waited = [p.service for p in system.procs if "waiting to" in p.log_path.read_text(errors="replace")]
    print(f"\nservices that waited for the cluster at start-up: {waited}")


async def test_every_node_restarted_while_timers_are_pending(tmp_path: Path) -> None:
    mark = Marks()
    # steps of 7.5-10 s: the first step of every queue is due after the cluster is back (about 6 s)
    async with r3_system(tmp_path, time_scale=2.5) as system, aiohttp.ClientSession() as http:
        mark("ready")
        players = await connect_players(system, "c", http)
        try:
            await play(players, "c", tasks=2, quantity=1)
            await all_current(system.js, [system.events], system.cluster.names)  # so `before` is whole
            before = await logs_of(system, players)
            idle = [pid for pid, log in before.items() if queue_idle(log)]
            assert not idle, f"premise: every queue has a step due in the future at the stop; idle: {idle}"
            mark("stop all")
            await system.cluster.restart_all()
            mark("nodes started")
            await leader_of(system.js, system.events, timeout=60)
            back = datetime.now(UTC)
            mark("leader elected")
            after = await verify(system, players, "(c) every node restarted with timers pending")
            mark("verified")
            # the timers pending at the stop fired afterwards: steps the log did not hold completed
            late = 0
            for p in players:
                old = {r.seq for r in before[p.id] if r.type == "task.step_completed"}
                new = [r for r in after[p.id] if r.type == "task.step_completed" and r.seq not in old]
                assert new, f"{p.id}: no step completed after the restart"
                late += new[0].occurred_at > back  # due after the cluster was back, not at once on restart
        finally:
            await asyncio.gather(*(p.close() for p in players))
    print(
        f"\n{late} of {PLAYERS} pending timers were due after the cluster was back; stale reads {system.stale_reads}; "
        + ", ".join(mark)
    )
