"""A player reaches only their own data: another player's token never reads or changes it."""

from __future__ import annotations

import time

import aiohttp
import jwt
import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from questlog.gateway.auth import AuthError, TokenVerifier
from questlog.services.contract import protocol
from questlog.services.contract.protocol import METHODS

from .test_jsonrpc import authed


def hostile_params(method: str, victim: str, task_id: str, victim_token: str) -> dict:
    """Params that would touch the victim if the gateway trusted them."""
    return {
        "session.refresh": {"token": victim_token},
        "queue.enqueue": {"activity": "harvesting", "target": "oak_log", "quantity": 1},
        "queue.cancel": {"task_id": task_id},
        "queue.reorder": {"order": [task_id]},
        "queue.configure": {"max_size": 1},
        "sync.push": {
            "commands": [
                {"method": "queue.cancel", "params": {"task_id": task_id, "command_id": "x1"}},
                {"method": "queue.clear", "params": {"command_id": "x2"}},
            ]
        },
        "events.replay": {"from_version": 1},
        "presence.get": {"player_ids": [victim]},
        "presence.subscribe": {"player_ids": [victim]},
        "presence.unsubscribe": {"player_ids": [victim]},
        "admin.inspect": {"player_id": victim},
        "admin.replay": {"player_id": victim},
        "admin.pause": {"player_id": victim, "reason": "x"},
        "admin.resume": {"player_id": victim},
        "admin.grant": {"player_id": victim, "reason": "x", "xp": {"combat": 1000}},
        "admin.enqueue": {"player_id": victim, "activity": "harvesting", "target": "oak_log", "quantity": 1},
    }.get(method, {})


def without_errors(value):
    if isinstance(value, dict):
        return {k: without_errors(v) for k, v in value.items() if k != "error"}
    if isinstance(value, list):
        return [without_errors(v) for v in value]
    return value


async def test_another_players_token_never_reads_or_changes_this_players_data(
    open_socket, token, player_id, gateway, gateway_wiring, http: aiohttp.ClientSession
) -> None:
    victim, intruder = player_id, f"{player_id}-x"
    vsock = await authed(open_socket, token, victim)
    assert "result" in await vsock.request("queue.pause", {"command_id": "v-pause"})
    enq = await vsock.request("queue.enqueue", {"activity": "harvesting", "target": "oak_log", "quantity": 3})
    task_id = enq["result"]["task"]["task_id"]
    before = await gateway_wiring.store.read(victim)

    isock = await authed(open_socket, token, intruder)
    answers = []
    for name in METHODS:
        if name == "session.hello":
            continue
        params = hostile_params(name, victim, task_id, token(victim))
        answers.append((name, await isock.request(name, params)))
        # a smuggled player_id is refused, never obeyed
        if "player_id" not in params and name not in ("session.refresh",):
            smuggled = await isock.request(name, {**params, "player_id": victim})
            assert smuggled["error"]["code"] == protocol.INVALID_PARAMS, (name, smuggled)
    headers = {"Authorization": f"Bearer {token(intruder)}"}
    for name in METHODS:
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": name,
            "params": hostile_params(name, victim, task_id, token(victim)),
        }
        async with http.post(f"{gateway.base}/rpc", json=body, headers=headers) as resp:
            answers.append((f"http {name}", await resp.json()))

    codes = {name: a.get("error", {}).get("code") for name, a in answers}
    assert codes["session.refresh"] == protocol.FORBIDDEN
    assert all(codes[n] == protocol.FORBIDDEN for n in METHODS if METHODS[n].admin)
    assert all(codes[f"http {n}"] == protocol.FORBIDDEN for n in METHODS if METHODS[n].admin)
    for name, answer in answers:
        if "presence" in name:
            continue  # presence is public by design: online or not, never game data
        # errors may echo what the intruder sent (a not-found task id); results never show the victim
        text = msgspec.json.encode(without_errors(answer.get("result"))).decode()
        assert victim + '"' not in text and task_id not in text, (name, answer)
    assert await gateway_wiring.store.read(victim) == before


async def test_token_expiry_closes_the_session_and_refresh_extends_it(open_socket, token, player_id) -> None:
    kept = await open_socket()
    await kept.request("session.hello", {"token": token(player_id, ttl_s=2)})
    lapsing = await open_socket()
    await lapsing.request("session.hello", {"token": token(player_id, ttl_s=2)})
    refreshed = await kept.request("session.refresh", {"token": token(player_id, ttl_s=3600)})
    assert refreshed["result"]["expires_at"].endswith("Z")
    assert await lapsing.closed(timeout=10) == 4001
    assert "result" in await kept.request("player.get")


def test_rs256_tokens_verify_with_the_configured_public_key(settings, tmp_path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "pub.pem").write_bytes(pem)
    verifier = TokenVerifier(msgspec.structs.replace(settings, jwt_public_key=str(tmp_path / "pub.pem")))
    good = jwt.encode({"sub": "p-rs", "exp": int(time.time()) + 60, "roles": ["admin"]}, key, algorithm="RS256")
    identity = verifier.verify(good)
    assert identity.player_id == "p-rs" and identity.is_admin
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode({"sub": "p-rs", "exp": int(time.time()) + 60}, other, algorithm="RS256")
    try:
        verifier.verify(forged)
    except AuthError as exc:
        assert "invalid" in exc.reason
    else:
        raise AssertionError("a token signed with another key was accepted")
