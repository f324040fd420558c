"""Settings from the environment and JWT verification: pure, no servers."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest

from questlog.gateway.auth import AuthError, TokenVerifier, issue_token
from questlog.services.runtime.settings import SettingsError, load_settings


def test_defaults_and_environment() -> None:
    s = load_settings({})
    assert (s.http_port, s.time_scale, s.replicas, s.nats_url) == (8080, 1.0, 1, None)
    s = load_settings({"QUESTLOG_HTTP_PORT": "9001", "QUESTLOG_TIME_SCALE": "0.05", "QUESTLOG_REPLICAS": "3"})
    assert (s.http_port, s.time_scale, s.replicas) == (9001, 0.05, 3)
    s = load_settings({"QUESTLOG_ACK_WAIT_S": "7.5", "QUESTLOG_LISTEN_BACKLOG": "1024", "QUESTLOG_REUSE_PORT": "1"})
    assert (s.ack_wait_s, s.realtime.listen_backlog, s.realtime.reuse_port) == (7.5, 1024, True)


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("QUESTLOG_HTTP_PORT", "eighty"),
        ("QUESTLOG_TIME_SCALE", "0"),
        ("QUESTLOG_REPLICAS", "2"),
        ("QUESTLOG_ACK_WAIT_S", "0.5"),
        ("QUESTLOG_LISTEN_BACKLOG", "0"),
    ],
)
def test_bad_values_name_the_variable(var: str, value: str) -> None:
    with pytest.raises(SettingsError, match=var.removeprefix("QUESTLOG_").lower() + "|" + var):
        load_settings({var: value})


def test_dev_secret_is_generated_once_and_kept(tmp_path: Path) -> None:
    s = load_settings({"QUESTLOG_DATA_DIR": str(tmp_path)})
    first = s.with_jwt_secret().jwt_secret
    assert first and first == s.with_jwt_secret().jwt_secret
    assert (tmp_path / "jwt-secret").stat().st_mode & 0o077 == 0


def test_tokens_verify_and_expire(tmp_path: Path) -> None:
    s = load_settings({"QUESTLOG_JWT_SECRET": "k" * 32})
    verifier = TokenVerifier(s)
    ident = verifier.verify(issue_token(s, "p-1", admin=True))
    assert ident.player_id == "p-1" and ident.is_admin
    expired = jwt.encode({"sub": "p-1", "exp": int(time.time()) - 1}, "k" * 32, algorithm="HS256")
    with pytest.raises(AuthError, match="expired"):
        verifier.verify(expired)
    forged = jwt.encode({"sub": "p-1", "exp": int(time.time()) + 60}, "x" * 32, algorithm="HS256")
    with pytest.raises(AuthError, match="invalid"):
        verifier.verify(forged)
    with pytest.raises(AuthError):
        verifier.verify("not-a-jwt")
    none_alg = jwt.encode({"sub": "p-1", "exp": int(time.time()) + 60}, None, algorithm="none")
    with pytest.raises(AuthError, match="not accepted"):
        verifier.verify(none_alg)


def test_a_remembered_token_still_expires_and_a_forged_one_is_never_remembered() -> None:
    s = load_settings({"QUESTLOG_JWT_SECRET": "k" * 32})
    verifier = TokenVerifier(s, cache_size=2)
    token = issue_token(s, "p-1", ttl_s=60)
    first = verifier.verify(token)
    assert verifier.verify(token) == first  # remembered
    with pytest.raises(AuthError, match="expired"):
        verifier.verify(token, now=first.expires_at)  # the expiry is checked at each use
    forged = jwt.encode({"sub": "p-1", "exp": int(time.time()) + 60}, "x" * 32, algorithm="HS256")
    for _ in range(2):  # refused each time: a failed check is not remembered
        with pytest.raises(AuthError, match="invalid"):
            verifier.verify(forged)
    for i in range(5):
        verifier.verify(issue_token(s, f"p-{i}", ttl_s=60))
    assert len(verifier._verified) == 2  # bounded


@pytest.mark.parametrize("sub", ["*", ">", "players.x", "a b", "x" * 65])
def test_a_sub_that_is_not_a_player_id_is_refused(sub: str) -> None:
    """The player id becomes a subject token: a wildcard would widen every read."""
    s = load_settings({"QUESTLOG_JWT_SECRET": "k" * 32})
    token = jwt.encode({"sub": sub, "exp": int(time.time()) + 60}, "k" * 32, algorithm="HS256")
    with pytest.raises(AuthError, match="player id"):
        TokenVerifier(s).verify(token)


def test_the_send_queue_must_hold_a_whole_replay() -> None:
    with pytest.raises(SettingsError, match="SEND_QUEUE_SIZE"):
        load_settings({"QUESTLOG_REPLAY_LIMIT": "1000", "QUESTLOG_SEND_QUEUE_SIZE": "1024"})
    assert load_settings({"QUESTLOG_REPLAY_LIMIT": "100", "QUESTLOG_SEND_QUEUE_SIZE": "264"}).replay_limit == 100
