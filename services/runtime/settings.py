"""One typed settings object, read from the environment.

Every service receives a `Settings`; nothing reads `os.environ` elsewhere, so a
test can run several differently-configured services in one process.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from questlog.events.streams import StreamNames


class SettingsError(ValueError):
    """An environment variable holds a value the settings cannot accept."""


class RealtimeSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The realtime tier: gateway limits, presence and the notifier."""

    heartbeat_s: float = 15.0
    send_queue_size: int = 4096  # messages queued for one socket before it is closed 4008
    deflate_idle_s: float = 5.0  # a socket quiet this long gives its compressor back (gateway/deflate.py)
    ws_deflate: bool = True  # offer permessage-deflate (costs memory per idle socket: docs/benchmarks.md)
    max_inflight: int = 32  # requests one socket may have in progress; reading pauses beyond
    max_conns_per_player: int = 5  # per gateway process
    max_conns_per_ip: int = 100  # per gateway process
    listen_backlog: int = 4096  # connections the kernel queues before accept (capped by net.core.somaxconn)
    reuse_port: bool = False  # SO_REUSEPORT: several gateway processes on one port, one per core
    rate_player_per_s: float = 50.0
    rate_player_burst: int = 100
    rate_ip_per_s: float = 200.0
    rate_ip_burst: int = 400
    max_presence_subscriptions: int = 500  # per session
    presence_ttl_s: float = 30.0
    presence_sweep_s: float = 1.0
    live_check_s: float = 5.0  # how often every live session is checked against the log
    admission_max_latency_ms: float = 1000.0  # commands slower than this always close a gateway's admission
    admission_max_inflight: int = 256  # commands one gateway has in flight at most
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


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    metrics_port: int = 0  # `questlog run`: /metrics on this port (0: off)
    nats_url: str | None = None
    redis_url: str | None = None
    nats_port: int = 4222
    redis_port: int = 6379
    data_dir: str = ".questlog"
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    time_scale: float = 1.0
    replicas: int = 1
    stream_prefix: str = ""
    snapshot_every: int = 50
    replay_limit: int = 1000
    ack_wait_s: float = 30.0  # a message a crashed consumer held comes back after this
    startup_timeout_s: float = 120.0  # how long a starting service waits for NATS and JetStream
    sweep_every_s: int = 30  # how often the stuck-queue sweep looks (services/sweep.py)
    sweep_grace_s: float = 60.0  # how far past due a queue must be before the sweep drives it
    max_frame_bytes: int = 65536
    dev_mode: bool = False
    log_level: str = "INFO"
    realtime: RealtimeSettings = RealtimeSettings()

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def streams(self) -> StreamNames:
        return StreamNames(self.stream_prefix)

    def with_jwt_secret(self) -> Settings:
        """The settings with a JWT secret: the configured one, else a dev secret kept on disk."""
        if self.jwt_secret:
            return self
        path = self.data_path / "jwt-secret"
        if path.exists():
            secret = path.read_text().strip()
        else:
            self.data_path.mkdir(parents=True, exist_ok=True)
            secret = secrets.token_urlsafe(32)
            path.write_text(secret + "\n")
            path.chmod(0o600)
        return msgspec.structs.replace(self, jwt_secret=secret)


# env var -> realtime settings field
_REALTIME_ENV = {
    "QUESTLOG_HEARTBEAT_S": "heartbeat_s",
    "QUESTLOG_SEND_QUEUE_SIZE": "send_queue_size",
    "QUESTLOG_WS_DEFLATE": "ws_deflate",
    "QUESTLOG_DEFLATE_IDLE_S": "deflate_idle_s",
    "QUESTLOG_MAX_INFLIGHT": "max_inflight",
    "QUESTLOG_MAX_CONNS_PER_PLAYER": "max_conns_per_player",
    "QUESTLOG_MAX_CONNS_PER_IP": "max_conns_per_ip",
    "QUESTLOG_LISTEN_BACKLOG": "listen_backlog",
    "QUESTLOG_REUSE_PORT": "reuse_port",
    "QUESTLOG_RATE_PLAYER_PER_S": "rate_player_per_s",
    "QUESTLOG_RATE_PLAYER_BURST": "rate_player_burst",
    "QUESTLOG_RATE_IP_PER_S": "rate_ip_per_s",
    "QUESTLOG_RATE_IP_BURST": "rate_ip_burst",
    "QUESTLOG_MAX_PRESENCE_SUBSCRIPTIONS": "max_presence_subscriptions",
    "QUESTLOG_PRESENCE_TTL_S": "presence_ttl_s",
    "QUESTLOG_PRESENCE_SWEEP_S": "presence_sweep_s",
    "QUESTLOG_LIVE_CHECK_S": "live_check_s",
    "QUESTLOG_ADMISSION_MAX_LATENCY_MS": "admission_max_latency_ms",
    "QUESTLOG_ADMISSION_MAX_INFLIGHT": "admission_max_inflight",
    "QUESTLOG_INBOX_MAX": "inbox_max",
    "QUESTLOG_WEBHOOK_URL": "webhook_url",
    "QUESTLOG_WEBHOOK_ATTEMPTS": "webhook_attempts",
    "QUESTLOG_WEBHOOK_BACKOFF_S": "webhook_backoff_s",
    "QUESTLOG_WEBHOOK_TIMEOUT_S": "webhook_timeout_s",
    "QUESTLOG_GATEWAY_ID": "gateway_id",
}

# env var -> settings field
_ENV = {
    "QUESTLOG_HTTP_HOST": "http_host",
    "QUESTLOG_HTTP_PORT": "http_port",
    "QUESTLOG_METRICS_PORT": "metrics_port",
    "QUESTLOG_NATS_URL": "nats_url",
    "QUESTLOG_REDIS_URL": "redis_url",
    "QUESTLOG_NATS_PORT": "nats_port",
    "QUESTLOG_REDIS_PORT": "redis_port",
    "QUESTLOG_DATA_DIR": "data_dir",
    "QUESTLOG_JWT_SECRET": "jwt_secret",
    "QUESTLOG_JWT_PUBLIC_KEY": "jwt_public_key",
    "QUESTLOG_TIME_SCALE": "time_scale",
    "QUESTLOG_REPLICAS": "replicas",
    "QUESTLOG_STREAM_PREFIX": "stream_prefix",
    "QUESTLOG_SNAPSHOT_EVERY": "snapshot_every",
    "QUESTLOG_REPLAY_LIMIT": "replay_limit",
    "QUESTLOG_ACK_WAIT_S": "ack_wait_s",
    "QUESTLOG_STARTUP_TIMEOUT_S": "startup_timeout_s",
    "QUESTLOG_SWEEP_EVERY_S": "sweep_every_s",
    "QUESTLOG_SWEEP_GRACE_S": "sweep_grace_s",
    "QUESTLOG_MAX_FRAME_BYTES": "max_frame_bytes",
    "QUESTLOG_DEV_MODE": "dev_mode",
    "QUESTLOG_LOG_LEVEL": "log_level",
}


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build settings from `environ` (default: the process environment) plus overrides."""
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    for var, field in _ENV.items():
        value = env.get(var)
        if value is not None and value != "":
            raw[field] = value
    realtime = {field: env[var] for var, field in _REALTIME_ENV.items() if env.get(var)}
    if realtime:
        raw["realtime"] = realtime
    raw.update(overrides)
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(_explain(exc)) from None
    _check(settings)
    return settings


def _explain(exc: msgspec.ValidationError) -> str:
    text = str(exc)
    for var, field in _ENV.items():
        text = text.replace(f"`$.{field}`", var)
    for var, field in _REALTIME_ENV.items():
        text = text.replace(f"`$.realtime.{field}`", var)
    return f"invalid setting: {text}"


def _check(s: Settings) -> None:
    if not 0 < s.time_scale <= 1000:
        raise SettingsError("invalid setting: QUESTLOG_TIME_SCALE must be > 0 and <= 1000")
    if s.replicas not in (1, 3, 5):
        raise SettingsError("invalid setting: QUESTLOG_REPLICAS must be 1, 3 or 5")
    for name in ("http_port", "metrics_port", "nats_port", "redis_port"):
        port = getattr(s, name)
        if not 0 <= port <= 65535:
            raise SettingsError(f"invalid setting: {name} {port} is not a TCP port")
    rt = s.realtime
    if rt.deflate_idle_s < 0:
        raise SettingsError("invalid setting: QUESTLOG_DEFLATE_IDLE_S must not be negative")
    if rt.listen_backlog < 1:
        raise SettingsError("invalid setting: QUESTLOG_LISTEN_BACKLOG must be at least 1")
    if rt.admission_max_latency_ms <= 0 or rt.admission_max_inflight < 1:
        raise SettingsError("invalid setting: QUESTLOG_ADMISSION_MAX_LATENCY_MS and _MAX_INFLIGHT must be positive")
    if rt.live_check_s <= 0:
        raise SettingsError("invalid setting: QUESTLOG_LIVE_CHECK_S must be positive")
    if rt.send_queue_size < 1 or rt.max_inflight < 1 or rt.presence_ttl_s <= 0 or rt.heartbeat_s <= 0:
        raise SettingsError("invalid setting: queue sizes, TTLs and heartbeats must be positive")
    if s.replay_limit * 2 + 64 > rt.send_queue_size:
        # a resume sends up to replay_limit events, each maybe with a task.progress
        raise SettingsError(
            "invalid setting: QUESTLOG_SEND_QUEUE_SIZE must hold a whole replay: "
            "at least 2 × QUESTLOG_REPLAY_LIMIT + 64"
        )
    if not (1 <= s.sweep_every_s <= 86400 and 0 <= s.sweep_grace_s <= 86400):
        raise SettingsError(
            "invalid setting: QUESTLOG_SWEEP_EVERY_S must be 1 s to a day, QUESTLOG_SWEEP_GRACE_S 0 to a day"
        )
    if not 1 <= s.startup_timeout_s <= 3600:
        raise SettingsError("invalid setting: QUESTLOG_STARTUP_TIMEOUT_S must be between 1 and 3600 seconds")
    if not 5 <= s.ack_wait_s <= 3600:
        raise SettingsError("invalid setting: QUESTLOG_ACK_WAIT_S must be between 5 and 3600 seconds")
    if s.snapshot_every < 1 or s.replay_limit < 1 or s.max_frame_bytes < 1024:
        raise SettingsError("invalid setting: snapshot_every, replay_limit >= 1; max_frame_bytes >= 1024")
