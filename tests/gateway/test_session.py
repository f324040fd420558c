"""session.hello and session.refresh: authentication first, the hello result, token expiry."""

from __future__ import annotations

from questlog.services.contract import protocol


async def test_anything_before_hello_is_not_authenticated(open_socket) -> None:
    sock = await open_socket()
    answer = await sock.request("queue.get")
    assert answer["error"]["code"] == protocol.NOT_AUTHENTICATED
    assert answer["error"]["data"]["reason"]


async def test_bad_and_expired_tokens_are_refused(open_socket, token, player_id) -> None:
    sock = await open_socket()
    bad = await sock.request("session.hello", {"token": "not-a-jwt"})
    assert bad["error"]["code"] == protocol.NOT_AUTHENTICATED
    expired = await sock.request("session.hello", {"token": token(player_id, ttl_s=-10)})
    assert expired["error"]["code"] == protocol.NOT_AUTHENTICATED
    assert "expired" in expired["error"]["data"]["reason"]


async def test_fresh_hello_returns_full_state(open_socket, token, player_id) -> None:
    sock = await open_socket()
    answer = await sock.request("session.hello", {"token": token(player_id)})
    result = answer["result"]
    assert result["player_id"] == player_id
    assert result["recovered"] is False and result["missed"] == 0
    assert result["heartbeat_s"] == 15
    assert result["unread"] == 0
    assert set(result["state"]) == {"queue", "player"}
    assert result["version"] == result["state"]["queue"]["version"]
    again = await sock.request("session.hello", {"token": token(player_id)})
    assert again["error"]["code"] == protocol.INVALID_REQUEST
