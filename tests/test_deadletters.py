"""Dead letters against real JetStream: listed, shown, re-driven once to the service that gave up on them."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import StreamConfig

from questlog.events import codec
from questlog.events.registry import default_registry
from questlog.events.schema import Recorded, TaskCancelled
from questlog.events.store import decode_stored
from questlog.services.cli.main import main
from questlog.services.runtime.consumer import ConsumerSpec, run_consumer
from questlog.services.runtime.redrive import redrive_durable
from questlog.services.runtime.settings import Settings

STREAM = "DLTEST"  # its own stream: the session's services never see these messages

Cli = Callable[..., Awaitable[tuple[int, str, str]]]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def test_stream(nc: NATS) -> str:
    await nc.jetstream().add_stream(StreamConfig(name=STREAM, subjects=["dltest.>"]))
    return STREAM


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """`questlog …` in this process, pointed at the test servers: (exit code, stdout, stderr)."""
    monkeypatch.setenv("QUESTLOG_NATS_URL", settings.nats_url or "")
    monkeypatch.setenv("QUESTLOG_REDIS_URL", settings.redis_url or "")
    monkeypatch.setenv("COLUMNS", "250")  # rich's width when stdout is no terminal
    monkeypatch.setattr("questlog.services.runtime.logs.configure_logging", lambda *a, **k: None)

    async def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = await asyncio.to_thread(main, list(argv))  # main runs its own event loop
        except SystemExit as exc:  # argparse's usage errors
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def spec_for(settings: Settings, subject: str) -> ConsumerSpec:
    return ConsumerSpec(
        durable=f"dl-{uuid.uuid4().hex[:8]}",
        stream=STREAM,
        filter_subjects=[subject],
        max_deliver=2,
        backoff_s=(0.01,),
        dead_letter_stream=settings.streams.dead_letters,
    )


async def listed(cli: Cli, durable: str) -> list[dict]:
    code, out, _ = await cli("deadletters", "list", "--consumer", durable, "--json")
    assert code == 0
    return [json.loads(line) for line in out.splitlines()]


async def settled(nc: NATS, stream: str, durable: str, past_seq: int) -> None:
    """Until the durable has acked (or given up on) everything up to `past_seq`: the server applies acks apart."""
    js = nc.jetstream()
    async with asyncio.timeout(10):
        while True:
            info = await js.consumer_info(stream, durable)
            if info.num_ack_pending == 0 and info.num_pending == 0 and (info.ack_floor.stream_seq or 0) >= past_seq:
                return
            await asyncio.sleep(0.01)


async def test_a_dead_letter_is_listed_shown_and_redriven_once(
    nc: NATS, settings: Settings, test_stream: str, cli: Cli, player_id: str
) -> None:
    js = nc.jetstream()
    registry = default_registry()
    subject = f"dltest.{player_id}.events.task.cancelled"
    occurred = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    body = codec.encode(Recorded(player_id=player_id, version=3, occurred_at=occurred, event=TaskCancelled("t-1")))
    stored = await js.publish(subject, body, headers={"Nats-Msg-Id": f"{player_id}:c-1:0", "Questlog-Append-End": "1"})
    spec = spec_for(settings, f"dltest.{player_id}.>")
    dead_letters = settings.streams.dead_letters
    dl = await js.pull_subscribe(f"deadletter.{spec.durable}", stream=dead_letters)

    fixed = False
    calls: list[Msg] = []
    handled: asyncio.Queue[Msg] = asyncio.Queue()

    async def handler(msg: Msg) -> None:  # decodes as every service does
        calls.append(msg)
        rec = decode_stored(msg, registry)
        assert rec.seq == msg.metadata.sequence.stream == stored.seq
        if not fixed:
            raise RuntimeError("broken until the fix is deployed")
        handled.put_nowait(msg)

    stop = asyncio.Event()
    task = asyncio.create_task(run_consumer(nc, spec, handler, stop, wait_s=0.2))
    try:
        (dead,) = await dl.fetch(1, timeout=20)
        seq = dead.metadata.sequence.stream
        assert len(calls) == 2, "dead-lettered after max_deliver"

        (letter,) = await listed(cli, spec.durable)
        assert letter["seq"] == seq
        assert letter["consumer"] == spec.durable
        assert (letter["subject"], letter["original_seq"]) == (subject, stored.seq)
        assert "broken until the fix" in letter["error"]
        assert (letter["redrives"], letter["redrive_status"]) == ([], None)
        code, out, _ = await cli("deadletters", "list", "--consumer", spec.durable)
        assert code == 0 and f"dead letters in {dead_letters}" in out
        assert str(seq) in out and spec.durable in out and "broken until the fix" in out

        code, out, _ = await cli("deadletters", "show", str(seq))
        assert code == 0
        assert f"dead letter {seq}" in out and "Questlog-Error" in out and "broken until the fix" in out
        assert f"task.cancelled of player {player_id}, version 3" in out
        code, out, _ = await cli("deadletters", "show", str(seq), "--json")
        shown = json.loads(out)
        assert shown["event"]["type"] == "task.cancelled" and shown["event"]["version"] == 3
        assert shown["headers"]["Questlog-Original-Nats-Msg-Id"] == f"{player_id}:c-1:0"

        fixed = True
        code, out, err = await cli("deadletters", "redrive", str(seq))
        assert code == 0, err
        assert f"re-drove dead letter {seq}" in out
        got = await asyncio.wait_for(handled.get(), 10)
        assert got.subject == subject and got.data == body
        headers = got.headers or {}
        assert headers["Nats-Sequence"] == str(stored.seq)
        assert headers["Nats-Msg-Id"] == f"{player_id}:c-1:0", "the original's Nats-* headers come back"
        assert headers["Questlog-Append-End"] == "1"
        assert headers["Questlog-Redrive-Of"] == str(seq)
        assert "Questlog-Error" not in headers
        assert got.metadata.stream == STREAM and got.metadata.consumer == spec.durable
        (letter,) = await listed(cli, spec.durable)
        (first,) = letter["redrives"]
        await settled(nc, dead_letters, redrive_durable(spec.durable), first["seq"])
        assert len(calls) == 3, "the re-drive is handled exactly once"
        assert (await listed(cli, spec.durable))[0]["redrive_status"] == "handled"
        code, out, _ = await cli("deadletters", "list", "--consumer", spec.durable)
        assert f"#{first['seq']}" in out and "handled" in out

        code, _, err = await cli("deadletters", "redrive", str(seq))
        assert code == 1 and "re-driven already" in err and "--again" in err
        assert len(calls) == 3

        code, out, err = await cli("deadletters", "redrive", str(seq), "--again")
        assert code == 0, err
        await asyncio.wait_for(handled.get(), 10)
        (letter,) = await listed(cli, spec.durable)
        earlier, again = letter["redrives"]
        assert earlier == first and again["seq"] > first["seq"]
        await settled(nc, dead_letters, redrive_durable(spec.durable), again["seq"])
        assert len(calls) == 4, "--again: once more, and once only"

        code, _, err = await cli("deadletters", "show", "999999999")
        assert code == 1 and "no dead letter 999999999" in err and "sequences" in err
        code, _, err = await cli("deadletters", "redrive", "999999999")
        assert code == 1 and "no dead letter 999999999" in err
        code, _, err = await cli("deadletters", "show", str(first["seq"]))
        assert code == 1 and f"is a re-drive of dead letter {seq}" in err
        code, _, err = await cli("deadletters", "redrive")
        assert code == 2 and "--all" in err
        code, _, _ = await cli("deadletters", "redrive", str(seq), "--all")
        assert code == 2
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_a_redrive_that_fails_again_is_a_dead_letter_again(
    nc: NATS, settings: Settings, test_stream: str, cli: Cli
) -> None:
    js = nc.jetstream()
    key = uuid.uuid4().hex[:8]
    subject = f"dltest.{key}.raw"
    await js.publish(subject, b"not an event")
    spec = spec_for(settings, subject)
    dl = await js.pull_subscribe(f"deadletter.{spec.durable}", stream=settings.streams.dead_letters)
    calls = 0

    async def handler(msg: Msg) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("still broken")

    stop = asyncio.Event()
    task = asyncio.create_task(run_consumer(nc, spec, handler, stop, wait_s=0.2))
    try:
        (first,) = await dl.fetch(1, timeout=20)
        code, out, _ = await cli("deadletters", "show", str(first.metadata.sequence.stream))
        assert code == 0 and "not an event" in out and "body" in out

        code, out, err = await cli("deadletters", "redrive", "--all", "--consumer", spec.durable)
        assert code == 0 and f"re-drove dead letter {first.metadata.sequence.stream}" in out, err
        (second,) = await dl.fetch(1, timeout=20)
        assert calls == 4, "the re-drive had its own max_deliver deliveries"
        assert second.data == b"not an event"
        assert second.headers["Questlog-Original-Subject"] == subject
        assert second.headers["Questlog-Redriven-From"] == str(first.metadata.sequence.stream)

        old, new = await listed(cli, spec.durable)
        assert old["redrive_status"] == "failed again"
        assert old["dead_lettered_again_as"] == new["seq"] == second.metadata.sequence.stream
        assert new["redriven_from"] == old["seq"] and new["redrives"] == []
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)

    # the service is stopped: the re-drive waits for it
    code, out, _ = await cli("deadletters", "redrive", "--all", "--consumer", spec.durable)
    assert code == 0 and f"re-drove dead letter {new['seq']}" in out
    assert "skipped 1" in out, "the one re-driven already is left alone"
    assert [d["redrive_status"] for d in await listed(cli, spec.durable)] == ["failed again", "waiting"]


async def test_an_empty_list_says_where_it_looked(settings: Settings, nc: NATS, cli: Cli) -> None:
    code, out, _ = await cli("deadletters", "list", "--consumer", "nobody-here")
    assert code == 0
    assert f"no dead letters of consumer nobody-here in {settings.streams.dead_letters}" in out
    code, out, err = await cli("deadletters", "list", "--consumer", "nobody-here", "--json")
    assert code == 0 and out == "" and "no dead letters" in err
