"""Each method is its Struct: it has a handler where the Struct says, and its answer has its result's shape."""

from __future__ import annotations

import msgspec
import pytest

from questlog.services.commands import CommandHandler
from questlog.services.contract.protocol import METHODS
from questlog.services.contract.results import RESULTS
from questlog.services.rules.catalog import load_rules
from questlog.services.rules.clock import SystemClock
from questlog.services.rules.decide import HANDLERS

from .test_jsonrpc import authed


async def test_every_method_has_its_handler_where_its_struct_says(gateway, gateway_wiring) -> None:
    commands = CommandHandler(gateway_wiring, load_rules(), SystemClock(), await gateway_wiring.players())
    served = {
        "decide": set(HANDLERS),
        "commands": set(commands.handlers),
        "gateway": set(gateway.gw.router._local),
        "session": {s.params for s in METHODS.values() if s.served_by == "session"},
    }
    for method in METHODS.values():
        assert method.params in served[method.served_by], f"{method.name} has no handler in {method.served_by}"
        assert method.result in RESULTS, f"{method.name} names no result Struct: {method.result}"
        assert method.summary and not method.summary.endswith(".")
    assert sum(len(v) for v in served.values()) == len(METHODS), "a handler for a method that does not exist"
    assert "admin.pause" in METHODS and METHODS["admin.pause"].admin and METHODS["queue.clear"].syncable


def conforms(method: str, result: object) -> None:
    """The answer converts into the method's result Struct, which forbids fields it does not name."""
    try:
        msgspec.convert(result, RESULTS[METHODS[method].result])
    except msgspec.ValidationError as exc:
        raise AssertionError(f"{method}: {exc}\n{result}") from None


async def test_every_answer_has_the_shape_of_its_result_struct(open_socket, token, player_id) -> None:
    sock = await open_socket()
    hello = await sock.request("session.hello", {"token": token(player_id)})
    conforms("session.hello", hello["result"])
    conforms("session.refresh", (await sock.request("session.refresh", {"token": token(player_id)}))["result"])
    calls = [
        ("queue.enqueue", {"activity": "harvesting", "target": "oak_log", "quantity": 3, "command_id": "m-1"}),
        ("queue.enqueue", {"activity": "harvesting", "target": "oak_log", "quantity": 2, "command_id": "m-2"}),
        ("queue.get", {}),
        ("player.get", {}),
        ("catalog.get", {}),
        ("queue.configure", {"max_size": 20}),
        ("queue.pause", {"reason": "tea"}),
        ("queue.resume", {}),
        ("sync.push", {"commands": [{"method": "queue.pause", "params": {"command_id": "m-3"}}]}),
        ("queue.resume", {}),
        ("events.replay", {"from_version": 1}),
        ("presence.get", {"player_ids": [player_id]}),
        ("presence.subscribe", {"player_ids": [player_id]}),
        ("presence.unsubscribe", {"player_ids": [player_id]}),
        ("inbox.get", {}),
        ("rpc.discover", {}),
    ]
    seen = set()
    for method, params in calls:
        answer = await sock.request(method, params)
        assert "result" in answer, (method, answer)
        conforms(method, answer["result"])
        seen.add(method)
    queue = (await sock.request("queue.get"))["result"]
    assert queue["current"] is not None, "the first task runs, so a running task's view is checked too"
    task_id = queue["current"]["task_id"]
    order = [t["task_id"] for t in queue["queued"]]
    conforms("queue.reorder", (await sock.request("queue.reorder", {"order": order}))["result"])
    conforms("queue.clear", (await sock.request("queue.clear"))["result"])
    conforms("queue.cancel", (await sock.request("queue.cancel", {"task_id": task_id}))["result"])

    admin = await authed(open_socket, token, f"{player_id}-ops")
    await admin.request("session.refresh", {"token": token(f"{player_id}-ops", admin=True)})
    admin_calls = [
        ("admin.pause", {"player_id": player_id, "reason": "looking"}),
        ("admin.resume", {"player_id": player_id}),
        ("admin.grant", {"player_id": player_id, "reason": "refund", "items": {"oak_log": 2}}),
        ("admin.enqueue", {"player_id": player_id, "activity": "combat", "target": "rat", "quantity": 1}),
        ("admin.inspect", {"player_id": player_id}),
        ("admin.replay", {"player_id": player_id}),
    ]
    for method, params in admin_calls:
        answer = await admin.request(method, params)
        assert "result" in answer, (method, answer)
        conforms(method, answer["result"])
        seen.add(method)
    assert seen | {"session.hello", "session.refresh", "queue.cancel", "queue.reorder", "queue.clear"} == set(METHODS)
    with pytest.raises(AssertionError, match=r"queue\.get"):
        conforms("queue.get", {"version": 1})  # a result missing its fields does not conform
