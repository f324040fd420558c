"""Hypothesis throws arbitrary frames at a live gateway: it never crashes and answers every request."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import aiohttp
import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from questlog.services.contract.protocol import METHODS

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)
ids = st.none() | st.integers() | st.text(max_size=10) | st.floats(allow_nan=False, allow_infinity=False) | json_values
methods = st.sampled_from(sorted(METHODS)) | st.text(max_size=30)
param_values = st.dictionaries(
    st.sampled_from(
        [
            "activity",
            "target",
            "quantity",
            "priority",
            "command_id",
            "expected_version",
            "task_id",
            "order",
            "from_version",
            "limit",
            "player_ids",
            "commands",
            "token",
            "resume",
            "max_size",
        ]
    ),
    json_values | st.integers(min_value=-(2**70), max_value=2**70),
    max_size=5,
)
requests = st.fixed_dictionaries(
    {"jsonrpc": st.just("2.0") | json_values, "method": methods | json_values},
    optional={"id": ids, "params": param_values | json_values},
)
frames = (
    requests.map(lambda r: msgspec.json.encode(r).decode())
    | st.lists(requests | json_values, max_size=6).map(lambda b: msgspec.json.encode(b).decode())
    | json_values.map(lambda v: msgspec.json.encode(v).decode())
    | st.integers(min_value=1, max_value=20_000).map(lambda n: "[" * n + "]" * n)
    | st.integers(min_value=1, max_value=9_000).map(lambda n: '{"a":' * n + "1" + "}" * n)
    | st.text(max_size=200)
    | st.integers(min_value=2**64, max_value=2**400).map(
        lambda n: f'{{"jsonrpc":"2.0","id":{n},"method":"events.replay","params":{{"from_version":{n}}}}}'
    )
)


def expected_ids(frame: str) -> list[Any] | None:
    """Ids that must be answered, when the frame is one well-formed request or a batch of them."""
    try:
        raw = msgspec.json.decode(frame)
    except Exception:
        return None
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for item in items:
        if (
            isinstance(item, dict)
            and "id" in item
            and isinstance(item["id"], str | int)
            and not isinstance(item["id"], bool)
        ):
            out.append(item["id"])
    return out


def well_formed(answer: Any) -> bool:
    if not isinstance(answer, dict) or answer.get("jsonrpc") != "2.0" or "id" not in answer:
        return False
    if ("result" in answer) == ("error" in answer):
        return False
    if "error" in answer:
        err = answer["error"]
        return isinstance(err.get("code"), int) and isinstance(err.get("message"), str)
    return True


def generated_frames(n: int) -> list[str]:
    """Frames drawn by hypothesis (the gateway runs on this test's event loop, so the draw is done first)."""
    out: list[str] = []

    @settings(max_examples=n, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(frame=frames)
    def draw(frame: str) -> None:
        out.append(frame)

    draw()
    return out


async def test_arbitrary_frames_never_crash_the_gateway_and_every_request_is_answered(
    gateway, token, player_id
) -> None:
    sentinel_ids = itertools.count(1)
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(gateway.ws_url)
        await ws.send_str(
            msgspec.json.encode(
                {"jsonrpc": "2.0", "id": "hello", "method": "session.hello", "params": {"token": token(player_id)}}
            ).decode()
        )
        assert "result" in msgspec.json.decode((await ws.receive(15)).data)

        async def one(frame: str) -> None:
            marker = f"sentinel-{next(sentinel_ids)}"
            await ws.send_str(frame)
            await ws.send_str(msgspec.json.encode({"jsonrpc": "2.0", "id": marker, "method": "rpc.discover"}).decode())
            answered: list[Any] = []
            want = expected_ids(frame) or []
            async with asyncio.timeout(20):
                while marker not in answered or not all(rid in answered for rid in want):
                    msg = await ws.receive()
                    assert msg.type == aiohttp.WSMsgType.TEXT, (frame[:200], msg)
                    data = msgspec.json.decode(msg.data)
                    if isinstance(data, dict) and data.get("method"):
                        continue  # a notification (an event of this player)
                    items = data if isinstance(data, list) else [data]
                    assert items and all(well_formed(a) for a in items), (frame[:200], data)
                    assert all(a.get("error", {}).get("code") != -32603 for a in items), (frame[:200], data)
                    answered += [a["id"] for a in items]

        for frame in generated_frames(250):
            await one(frame)
        await ws.close()
    async with aiohttp.ClientSession() as http, http.get(f"{gateway.base}/healthz") as resp:
        assert resp.status == 200
