"""The stack a scenario runs against: servers, services as `questlog run` subprocesses, a gateway.

By default everything is private to the run: nats-server and redis-server on
free loopback ports with their data in a temporary directory, each service a
real subprocess (as in production: `questlog run <service>`, configured by
`QUESTLOG_*` variables), so its memory and CPU can be read from /proc and it
can be killed with SIGKILL. With QUESTLOG_NATS_URL / QUESTLOG_REDIS_URL set,
those servers are used instead of embedded ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import msgspec
import nats
from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError

from questlog.events.streams import ensure_streams
from questlog.services.runtime.embedded import ServerProcess, free_port, nats_server, redis_server
from questlog.services.runtime.settings import Settings, load_settings

QUESTLOG = str(Path(sys.executable).parent / "questlog")

# Every bench client connects from 127.0.0.1: the per-address caps would refuse
# the 101st socket and rate-limit the 201st request per second. The per-player
# limits stay as shipped.
GATEWAY_ENV = {
    "QUESTLOG_MAX_CONNS_PER_IP": "1000000",
    "QUESTLOG_RATE_IP_PER_S": "1000000",
    "QUESTLOG_RATE_IP_BURST": "1000000",
    "MALLOC_MMAP_THRESHOLD_": "65536",  # as deploy/ runs the gateway (docs/operations.md)
}

# Durable consumers that exist once the service has started.
CONSUMERS = {"processor": "processor", "reward": "reward", "projector": "projector", "snapshotter": "snapshotter"}


class StackError(RuntimeError):
    """The stack did not come up; the message says which part and where its log is."""


class ServiceProcess:
    """One `questlog run <service>`: started, killed with SIGKILL, restarted, stopped with SIGTERM.

    `service` may name several, comma-separated: one worker process running them all.
    With `health`, a service other than the gateway gets a free QUESTLOG_METRICS_PORT at
    each start, so its `/readyz` and `/metrics` answer on `health_port` as the gateway's
    do on its HTTP port.
    """

    def __init__(
        self, service: str, env: dict[str, str], log_dir: Path, index: int = 0, *, health: bool = False
    ) -> None:
        self.service, self.env, self.log_dir, self.index = service, env, log_dir, index
        self.health = health
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.kills = 0
        self.health_port = 0  # where `/readyz` answers: the metrics port, or the gateway's own

    @property
    def name(self) -> str:
        name = self.service.replace(",", "+")
        return f"{name}-{self.index}" if self.index else name

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}-{self.starts}.log"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> ServiceProcess:
        self.starts += 1
        env = self.env
        if self.service == "gateway":
            self.health_port = int(env.get("QUESTLOG_HTTP_PORT", "8080"))
        elif self.health:
            self.health_port = free_port()
            env = {**env, "QUESTLOG_METRICS_PORT": str(self.health_port)}
        with self.log_path.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                QUESTLOG,
                "run",
                self.service,
                env=env,
                stdout=log,
                stderr=log,
                stdin=asyncio.subprocess.DEVNULL,
            )
        return self

    async def kill9(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            self.kills += 1
        if self.proc is not None:
            await self.proc.wait()

    async def ready(self, timeout: float = 60.0) -> ServiceProcess:
        """Until the process says it serves (`/readyz` on `health_port`); fails if it exits."""
        await http_ready(f"http://127.0.0.1:{self.health_port}", self, timeout)
        return self

    async def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, SIGKILL after `timeout`; the exit status (None: never started)."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        return self.proc.returncode

    def tail(self, lines: int = 5) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


async def http_ready(base: str, proc: ServiceProcess | None = None, timeout: float = 30.0) -> None:
    """Until `<base>/readyz` answers 200 (polled: a process start has no event to await).

    With `proc`, fails at once, naming its log, if that process exits meanwhile.
    """
    async with aiohttp.ClientSession() as http, asyncio.timeout(timeout):
        while True:
            if proc is not None and proc.proc is not None and proc.proc.returncode is not None:
                raise StackError(f"{proc.name} exited with {proc.proc.returncode}: {proc.tail()} (log {proc.log_path})")
            try:
                async with http.get(f"{base}/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)


class BenchStack:
    """Servers plus services for one scenario; `async with BenchStack(...) as stack`."""

    def __init__(
        self,
        services: Sequence[str] = (),
        *,
        gateway: bool = False,
        gateways: int = 1,
        time_scale: float = 1.0,
        instances: dict[str, int] | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.wanted = list(services)
        self.want_gateways = max(1, gateways) if gateway else 0
        self.time_scale = time_scale
        self.instances = instances or {}
        self.extra_env = extra_env or {}
        self.settings: Settings = load_settings()
        self.nc: NATS | None = None
        self.servers: list[ServerProcess] = []
        self.procs: list[ServiceProcess] = []
        self.gateways: list[ServiceProcess] = []  # separate processes, as behind a load balancer
        self.gateway_urls: list[str] = []
        self.http_urls: list[str] = []
        self.external = False
        self.nats_monitor_port = 0  # the embedded nats-server's /varz (0: an external server, not read)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.dir = Path(".")

    async def __aenter__(self) -> BenchStack:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, et: type[BaseException] | None, *exc: object) -> None:
        await self.stop(keep=et is not None)

    # -- start and stop ------------------------------------------------------------

    async def start(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="questlog-bench-")
        self.dir = Path(self._tmp.name)
        s = self.settings
        nats_url, redis_url = s.nats_url, s.redis_url
        self.external = bool(nats_url or redis_url)
        if not nats_url:
            self.nats_monitor_port = free_port()
            server = nats_server(free_port(), self.dir / "nats", monitor_port=self.nats_monitor_port)
            self.servers.append(await server.start())
            nats_url = server.url
        if not redis_url:
            (self.dir / "redis").mkdir(parents=True, exist_ok=True)
            server = redis_server(free_port(), self.dir / "redis", persist=False)
            self.servers.append(await server.start())
            redis_url = server.url
        self.settings = msgspec.structs.replace(
            s,
            nats_url=nats_url,
            redis_url=redis_url,
            jwt_secret=s.jwt_secret or secrets.token_urlsafe(32),
            time_scale=self.time_scale,
            data_dir=str(self.dir / "data"),
        )
        self.nc = await nats.connect(nats_url, name="questlog-bench", max_reconnect_attempts=-1)
        await ensure_streams(self.nc.jetstream(), self.settings.streams, self.settings.replicas)
        for service in self.wanted:
            for i in range(self.instances.get(service, 1)):
                proc = ServiceProcess(service, self.env(), self.dir, i)
                self.procs.append(await proc.start())
        for i in range(self.want_gateways):
            port = free_port()
            env = {**self.env(), **GATEWAY_ENV, "QUESTLOG_HTTP_PORT": str(port)}
            self.gateways.append(await ServiceProcess("gateway", env, self.dir, i).start())
            self.gateway_urls.append(f"ws://127.0.0.1:{port}/ws")
            self.http_urls.append(f"http://127.0.0.1:{port}")
        await self.ready()

    @property
    def gateway(self) -> ServiceProcess | None:
        return self.gateways[0] if self.gateways else None

    @property
    def gateway_url(self) -> str:
        return self.gateway_urls[0] if self.gateway_urls else ""

    def env(self) -> dict[str, str]:
        s = self.settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("QUESTLOG_")}
        env.update(
            QUESTLOG_NATS_URL=s.nats_url or "",
            QUESTLOG_REDIS_URL=s.redis_url or "",
            QUESTLOG_JWT_SECRET=s.jwt_secret or "",
            QUESTLOG_TIME_SCALE=str(s.time_scale),
            QUESTLOG_DATA_DIR=s.data_dir,
            QUESTLOG_LOG_LEVEL="WARNING",
        )
        if s.stream_prefix:
            env["QUESTLOG_STREAM_PREFIX"] = s.stream_prefix
        env.update(self.extra_env)
        return env

    async def stop(self, keep: bool = False) -> None:
        """Stop everything; `keep` leaves the directory (service logs) for a post-mortem."""
        procs = [*self.procs, *self.gateways]
        await asyncio.gather(*(p.stop() for p in procs), return_exceptions=True)
        if self.nc is not None and not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.close(), 5)
        for server in reversed(self.servers):
            await server.stop()
        self.servers.clear()
        if self._tmp is not None:
            if keep:
                kept = self.dir.with_name(self.dir.name + "-kept")
                with contextlib.suppress(OSError):
                    shutil.copytree(self.dir, kept, ignore=shutil.ignore_patterns("nats", "redis", "data"))
                    print(f"questlog bench: service logs kept in {kept}", file=sys.stderr)
            with contextlib.suppress(OSError):
                self._tmp.cleanup()
            self._tmp = None

    # -- readiness -------------------------------------------------------------------

    async def ready(self, timeout: float = 60.0) -> None:
        """Until the commands service answers, the consumers exist and the gateway is ready."""
        deadline = time.monotonic() + timeout
        assert self.nc is not None
        js = self.nc.jetstream()
        for proc in [*self.procs, *self.gateways]:
            while True:
                if not proc.alive:
                    raise StackError(f"{proc.name} exited at start-up: {proc.tail()} (log {proc.log_path})")
                if await self._is_ready(proc, js):
                    break
                if time.monotonic() > deadline:
                    raise StackError(f"{proc.name} not ready after {timeout:.0f} s (log {proc.log_path})")
                await asyncio.sleep(0.1)  # readiness of another process: nothing to await but a poll

    async def _is_ready(self, proc: ServiceProcess, js: object) -> bool:
        for service in proc.service.split(","):
            if not await self._serves(proc, service):
                return False
        return True

    async def _serves(self, proc: ServiceProcess, service: str) -> bool:
        assert self.nc is not None
        if service == "commands":
            try:
                await self.nc.request("$SRV.PING.questlog-commands", b"", timeout=0.5)
                return True
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                return False
        if service == "gateway":
            try:
                url = self.http_urls[self.gateways.index(proc)]
                async with aiohttp.ClientSession() as http, http.get(f"{url}/readyz") as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return False
        durable = CONSUMERS.get(service)
        if durable is None:
            return True
        try:
            await self.nc.jetstream().consumer_info(self.settings.streams.events, durable)
            return True
        except NotFoundError:
            return False

    # -- what scenarios read --------------------------------------------------------------

    def pids(self) -> dict[str, int]:
        """Every process of the stack by name, the bench itself included."""
        out: dict[str, int] = {"bench (load generator)": os.getpid()}
        for server in self.servers:
            if server.pid:
                out[server.name] = server.pid
        for proc in self.procs:
            out[proc.name] = proc.pid
        for gateway in self.gateways:
            out[gateway.name] = gateway.pid
        return out

    def of(self, service: str) -> list[ServiceProcess]:
        return [p for p in self.procs if p.service == service]

    async def gateway_metric(self, name: str) -> float:
        """One value from the gateways' /metrics (e.g. `questlog_gateway_connections`), summed over them."""
        total = 0.0
        async with aiohttp.ClientSession() as http:
            for url in self.http_urls:
                async with http.get(f"{url}/metrics") as r:
                    text = await r.text()
                for line in text.splitlines():
                    if line.startswith(name + "{") or line.startswith(name + " "):
                        total += float(line.rsplit(" ", 1)[1])
                        break
        return total
