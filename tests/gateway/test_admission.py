"""Admission control: past what the system answers in time, commands are refused at once, with no effect."""

from __future__ import annotations

from pathlib import Path

import nats
import pytest

from questlog.gateway.admission import Admission
from questlog.services.contract.command_client import Actor, CommandClient
from questlog.services.contract.protocol import RATE_LIMITED, RpcError
from questlog.services.runtime.connections import Wiring

from ..servers import local_nats
from .conftest import RawSocket, start_gateway
from .test_recovery import hello


def settle(admission: Admission, seconds: float, rounds: int) -> None:
    """`rounds` times: as many commands as the limit allows, each answered after `seconds`."""
    for _ in range(rounds):
        n = 0
        while admission.admit():
            n += 1
        for _ in range(n):
            admission.done(seconds)


def test_queueing_closes_the_window_and_a_slow_but_steady_system_does_not() -> None:
    admission = Admission(max_inflight=100)
    assert sum(admission.admit() for _ in range(101)) == 100, "at most max_inflight"
    for _ in range(100):
        admission.done(0.08)
    settle(admission, 0.08, 20)
    steady = admission.limit
    assert steady > 50, "80 ms every time is the machine's pace, not a queue"
    for slower in (0.16, 0.32, 0.64, 1.0):  # a queue builds: every round waits longer than the last
        settle(admission, slower, 2)
    assert admission.limit < steady / 2
    assert admission.retry_after_ms() >= 50
    settle(admission, 0.08, 60)
    assert admission.limit > steady / 2, "the queue drained: the window opens again"


def test_answers_over_the_maximum_latency_close_it_whatever_the_baseline() -> None:
    admission = Admission(max_inflight=100, max_latency_s=1.0)
    settle(admission, 2.0, 30)
    assert admission.limit < 10


async def test_a_refused_command_has_no_effect_and_succeeds_when_retried(
    gateway_wiring: Wiring, open_socket, token, player_id
) -> None:
    running = await start_gateway(gateway_wiring, admission_max_inflight=1)
    try:
        sock: RawSocket = await open_socket(running.ws_url)
        await hello(sock, token(player_id))

        def enqueue(rid: int, command_id: str) -> dict:
            params = {"activity": "harvesting", "target": "oak_log", "quantity": 1, "command_id": command_id}
            return {"jsonrpc": "2.0", "id": rid, "method": "queue.enqueue", "params": params}

        # one frame, two commands: the first is in flight when the second is considered
        await sock.send([enqueue(1, "first"), enqueue(2, "second")])
        answers: dict[int, dict] = {}
        while len(answers) < 2:
            for item in m if isinstance(m := await sock.recv(), list) else [m]:
                if "id" in item:
                    answers[item["id"]] = item
                else:
                    sock.notes.append(item)
        assert "result" in answers[1]
        refused = answers[2]["error"]
        assert refused["code"] == RATE_LIMITED and refused["data"]["retry_after_ms"] >= 50, refused
        log = await gateway_wiring.store.read(player_id)
        assert [r.command_id for r in log if r.type == "task.enqueued"] == ["first"], "the refused one did nothing"

        again = await sock.request("queue.enqueue", enqueue(3, "second")["params"])
        assert "result" in again, again
        log = await gateway_wiring.store.read(player_id)
        assert [r.command_id for r in log if r.type == "task.enqueued"] == ["first", "second"]
        assert running.gw.admission.refused == 1
    finally:
        await running.runner.cleanup()


async def test_a_commands_service_that_is_away_answers_try_again_not_internal(tmp_path: Path) -> None:
    async with local_nats(tmp_path) as server:  # no commands service listens here
        nc = await nats.connect(server.url)
        try:
            with pytest.raises(RpcError) as refused:
                await CommandClient(nc).call("queue.get", "p-1", {}, Actor("p-1"))
        finally:
            await nc.close()
    assert refused.value.code == RATE_LIMITED and refused.value.data and refused.value.data["retry_after_ms"] > 0
