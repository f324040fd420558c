"""The realtime tier's knobs: gateway limits, presence and notifier, from `QUESTLOG_*` variables.

Kept beside the gateway rather than in `services/settings.py` so the core
settings stay small; read once at start-up (`load_realtime_settings`) and
passed down, never read from the environment elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import msgspec

from questlog.services.settings import SettingsError


class RealtimeSettings(msgspec.Struct, frozen=True, kw_only=True):
    heartbeat_s: float = 15.0
    send_queue_size: int = 1024  # messages queued for one socket before it is closed 4008
    max_inflight: int = 32  # requests one socket may have in progress; reading pauses beyond
    max_conns_per_player: int = 5  # per gateway process
    max_conns_per_ip: int = 100  # per gateway process
    rate_player_per_s: float = 50.0
    rate_player_burst: int = 100
    rate_ip_per_s: float = 200.0
    rate_ip_burst: int = 400
    max_presence_subscriptions: int = 500  # per session
    presence_ttl_s: float = 30.0
    presence_sweep_s: float = 1.0
    inbox_max: int = 100
    webhook_url: str | None = None
    webhook_attempts: int = 5
    webhook_backoff_s: float = 0.5
    webhook_timeout_s: float = 5.0
    gateway_id: str | None = None  # default: a random id per process

    @property
    def heartbeat_every_s(self) -> float:
        """How often a gateway renews its players' presence: three beats per TTL."""
        return self.presence_ttl_s / 3


_ENV = {
    "QUESTLOG_HEARTBEAT_S": "heartbeat_s",
    "QUESTLOG_SEND_QUEUE_SIZE": "send_queue_size",
    "QUESTLOG_MAX_INFLIGHT": "max_inflight",
    "QUESTLOG_MAX_CONNS_PER_PLAYER": "max_conns_per_player",
    "QUESTLOG_MAX_CONNS_PER_IP": "max_conns_per_ip",
    "QUESTLOG_RATE_PLAYER_PER_S": "rate_player_per_s",
    "QUESTLOG_RATE_PLAYER_BURST": "rate_player_burst",
    "QUESTLOG_RATE_IP_PER_S": "rate_ip_per_s",
    "QUESTLOG_RATE_IP_BURST": "rate_ip_burst",
    "QUESTLOG_MAX_PRESENCE_SUBSCRIPTIONS": "max_presence_subscriptions",
    "QUESTLOG_PRESENCE_TTL_S": "presence_ttl_s",
    "QUESTLOG_PRESENCE_SWEEP_S": "presence_sweep_s",
    "QUESTLOG_INBOX_MAX": "inbox_max",
    "QUESTLOG_WEBHOOK_URL": "webhook_url",
    "QUESTLOG_WEBHOOK_ATTEMPTS": "webhook_attempts",
    "QUESTLOG_WEBHOOK_BACKOFF_S": "webhook_backoff_s",
    "QUESTLOG_WEBHOOK_TIMEOUT_S": "webhook_timeout_s",
    "QUESTLOG_GATEWAY_ID": "gateway_id",
}


def load_realtime_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> RealtimeSettings:
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {f: env[v] for v, f in _ENV.items() if env.get(v)}
    raw.update(overrides)
    try:
        rt = msgspec.convert(raw, RealtimeSettings, strict=False)
    except msgspec.ValidationError as exc:
        text = str(exc)
        for var, field in _ENV.items():
            text = text.replace(f"`$.{field}`", var)
        raise SettingsError(f"invalid setting: {text}") from None
    if rt.send_queue_size < 1 or rt.max_inflight < 1 or rt.presence_ttl_s <= 0 or rt.heartbeat_s <= 0:
        raise SettingsError("invalid setting: queue sizes, TTLs and heartbeats must be positive")
    return rt
