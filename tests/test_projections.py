"""Redis read models against real servers: rebuild equals live, crashes converge, time travel."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import msgspec
import pytest
from nats.aio.client import Client as NATS

from questlog.events.store import EventStore
from questlog.projections.read_models import NAMES, ReadModels
from questlog.projections.rebuild import rebuild, rebuild_player
from questlog.services.bench.stack import ServiceProcess
from questlog.services.contract.command_client import Actor, CommandClient

from .processes import held_messages, metric
from .stacks import drained, in_process, private_stack

pytestmark = pytest.mark.slow
QUESTLOG = str(Path(sys.executable).parent / "questlog")
TARGETS = ["oak_log", "stone", "copper_ore", "trout"]


async def workload(nc: NATS, players: list[str], quantity: int = 2) -> None:
    """Each player queues one harvest; returns when every task completed."""
    done: set[str] = set()
    finished = asyncio.Event()

    async def on_completed(msg) -> None:
        done.add(msg.subject.split(".")[2])
        if len(done) == len(players):
            finished.set()

    sub = await nc.subscribe("live.players.*.events.task.completed", cb=on_completed)
    client = CommandClient(nc)
    sem = asyncio.Semaphore(50)

    async def one(i: int, p: str) -> None:
        async with sem:
            params = {"activity": "harvesting", "target": TARGETS[i % 4], "quantity": quantity}
            await client.call("queue.enqueue", p, params, Actor(p))

    await asyncio.gather(*(one(i, p) for i, p in enumerate(players)))
    await asyncio.wait_for(finished.wait(), 120)
    await sub.unsubscribe()


async def dump_all(read_models: ReadModels) -> dict[str, dict]:
    return {name: await read_models.dump(name) for name in NAMES}


async def test_flushall_and_rebuild_is_byte_identical_to_live(tmp_path: Path) -> None:
    players = [f"proj-{i:03d}" for i in range(300)]
    async with (
        private_stack(tmp_path) as (settings, nc, _env),
        in_process(settings, ("commands", "processor", "reward", "projector")) as wiring,
    ):
        await workload(nc, players)
        await drained(nc, settings, "projector")
        read_models = ReadModels(wiring.redis)
        live = await dump_all(read_models)
        assert len(live["queue"]) == len(players) + 2  # + the seq hash and position
        board = await read_models.leaderboard(top=3)
        assert len(board) == 3 and board[0][1] >= board[2][1] > 0
        stats = await read_models.stats()
        assert stats["players"] == len(players) and stats["tasks_completed"] == len(players)
        assert stats["completed:harvesting"] == len(players)

        await wiring.redis.flushall()
        store = EventStore(nc, settings.streams.events)
        report = await rebuild(store, read_models)
        assert report.players == len(players)
        first = await dump_all(read_models)
        assert first == live, "a rebuild from the log must equal what the projector built live"
        await rebuild(store, read_models)
        assert await dump_all(read_models) == first, "rebuilding twice gives the same bytes"


async def test_killing_the_projector_mid_stream_converges(tmp_path: Path) -> None:
    players = [f"kill-{i:03d}" for i in range(120)]
    async with private_stack(tmp_path) as (settings, nc, env):
        projector = await (await ServiceProcess("projector", env, tmp_path, health=True).start()).ready()
        async with in_process(settings, ("commands", "processor", "reward")) as wiring:
            run = asyncio.create_task(workload(nc, players, quantity=3))
            # kill -9 the projector while it holds events it has not acknowledged, a few times
            for _ in range(3):
                assert await held_messages(nc, [(settings.streams.events, "projector")]), "no work in flight"
                await projector.kill9()
                await (await projector.start()).ready()
            await run
            await drained(nc, settings, "projector")
            again = await metric(projector, "questlog_consumer_redelivered_total")
            await projector.stop()
            assert again > 0, "the restarted projector was handed what the killed one held"
            read_models = ReadModels(wiring.redis)
            after_crashes = await dump_all(read_models)
            await rebuild(EventStore(nc, settings.streams.events), read_models)
            assert await dump_all(read_models) == after_crashes


async def test_one_player_rebuild_and_queries_served_from_read_models(tmp_path: Path) -> None:
    async with (
        private_stack(tmp_path) as (settings, nc, _env),
        in_process(settings, ("commands", "processor", "reward", "projector")) as wiring,
    ):
        await workload(nc, ["solo"])
        await drained(nc, settings, "projector")
        read_models = ReadModels(wiring.redis)
        client = CommandClient(nc)
        queue = await client.call("queue.get", "solo", {}, Actor("solo"))
        assert queue == await read_models.queue("solo")
        before = await dump_all(read_models)
        await wiring.redis.delete("ql:profile:a:p:solo")
        await rebuild_player(EventStore(nc, settings.streams.events), read_models, "solo")
        assert await dump_all(read_models) == before


async def test_cli_time_travel_matches_what_a_client_saw(tmp_path: Path) -> None:
    async with private_stack(tmp_path) as (settings, nc, env):
        async with in_process(settings, ("commands",)):
            client = CommandClient(nc)
            me = Actor("traveller")
            await client.call("queue.configure", "traveller", {"auto_start": False}, me)
            seen_player = await client.call("player.get", "traveller", {}, me)
            seen_queue = await client.call("queue.get", "traveller", {}, me)
            await client.call(
                "queue.enqueue", "traveller", {"activity": "harvesting", "target": "stone", "quantity": 2}, me
            )
            await client.call(
                "admin.grant",
                "ops",
                {"player_id": "traveller", "reason": "gift", "items": {"stone": 3}},
                Actor("ops", ("admin",)),
            )
        proc = await asyncio.create_subprocess_exec(
            QUESTLOG,
            "state",
            "--player",
            "traveller",
            "--at-version",
            str(seen_player["version"]),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        then = msgspec.json.decode(out)
        assert then["version"] == seen_player["version"]
        assert then["player"] == seen_player
        assert then["queue"] == seen_queue
        now = await asyncio.create_subprocess_exec(
            QUESTLOG, "state", "--player", "traveller", env=env, stdout=asyncio.subprocess.PIPE
        )
        current = msgspec.json.decode((await now.communicate())[0])
        assert current["version"] > then["version"]
        assert current["player"]["inventory"]["stone"] == then["player"]["inventory"].get("stone", 0) + 3


async def test_cli_replay_and_status_print_readable_output(tmp_path: Path) -> None:
    async with private_stack(tmp_path) as (settings, nc, env):
        async with in_process(settings, ("commands", "processor", "reward", "projector")):
            await workload(nc, ["reader"], quantity=1)
            await drained(nc, settings, "projector")

        async def run(*args: str) -> str:
            proc = await asyncio.create_subprocess_exec(
                QUESTLOG,
                *args,
                env={**env, "COLUMNS": "200"},
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
            return out.decode()

        timeline = await run("events", "replay", "--player", "reader")
        for t in (
            "player.created",
            "task.enqueued",
            "task.started",
            "task.step_completed",
            "reward.granted",
            "task.completed",
        ):
            assert t in timeline
        jsonl = (await run("events", "replay", "--player", "reader", "--type", "reward", "--json")).splitlines()
        assert [msgspec.json.decode(line)["type"] for line in jsonl] == ["reward.granted"]
        export = (await run("events", "export", "--format", "jsonl")).splitlines()
        assert [msgspec.json.decode(line)["version"] for line in export] == list(range(1, len(export) + 1))
        status = await run("projections", "status")
        assert "queue" in status and "leaderboard" in status
        rebuilt = await run("projections", "rebuild")
        assert f"from {len(export)} events of 1 players" in rebuilt
        inspect = await run("admin", "inspect", "--player", "reader")
        assert '"last_events"' in inspect
