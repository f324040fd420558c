"""Services as real subprocesses (`questlog run <service>`), for crash tests."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aiohttp
import nats.errors
from nats.aio.client import Client as NATS

from questlog.services.runtime.embedded import free_port

QUESTLOG = str(Path(sys.executable).parent / "questlog")


class ServiceProcess:
    def __init__(self, service: str, env: dict[str, str], log_dir: Path) -> None:
        self.service, self.env, self.log_dir = service, env, log_dir
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.health_port = 0  # where `/readyz` answers (QUESTLOG_METRICS_PORT; the gateway's own port)

    async def start(self) -> ServiceProcess:
        self.starts += 1
        log = (self.log_dir / f"{self.service}-{id(self)}-{self.starts}.log").open("wb")
        env = dict(self.env)
        if self.service != "gateway":
            self.health_port = free_port()
            env["QUESTLOG_METRICS_PORT"] = str(self.health_port)
        else:
            self.health_port = int(env.get("QUESTLOG_HTTP_PORT", "8080"))
        self.proc = await asyncio.create_subprocess_exec(
            QUESTLOG, "run", self.service, env=env, stdout=log, stderr=log, stdin=asyncio.subprocess.DEVNULL
        )
        return self

    async def ready(self, timeout: float = 60.0) -> ServiceProcess:
        """Until the service says it serves (its consumers exist and pull); fails if it exits."""
        await http_ready(f"http://127.0.0.1:{self.health_port}", self, timeout)
        return self

    async def kill9(self) -> None:
        assert self.proc
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()

    async def stop(self) -> int:
        assert self.proc
        if self.proc.returncode is None:
            self.proc.terminate()
        async with asyncio.timeout(30):
            return await self.proc.wait()


async def held_messages(nc: NATS, durables: list[tuple[str, str]], timeout: float = 30.0) -> bool:
    """Until one of the (stream, durable) consumers has messages delivered and not yet acknowledged
    (work in flight); False if none had any within `timeout` (polled: consumer state raises no event)."""
    js = nc.jetstream()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        for stream, durable in durables:
            try:
                if (await js.consumer_info(stream, durable)).num_ack_pending:
                    return True
            except nats.errors.Error:
                pass  # not created yet, or the server is busy: ask again
        await asyncio.sleep(0.02)
    return False


async def metric(proc: ServiceProcess, name: str) -> float:
    """The sum of a counter's samples on the process's `/metrics` (0 when it has none yet)."""
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{proc.health_port}/metrics") as r:
        text = await r.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


async def http_ready(base: str, proc: ServiceProcess | None = None, timeout: float = 30.0) -> None:
    """Until `<base>/readyz` answers 200 (polled: a process start has no event to await).

    With `proc`, fails at once, naming its log, if that process exits meanwhile.
    """
    async with aiohttp.ClientSession() as http, asyncio.timeout(timeout):
        while True:
            if proc is not None and proc.proc is not None and proc.proc.returncode is not None:
                raise AssertionError(f"{proc.service} exited with {proc.proc.returncode}; logs in {proc.log_dir}")
            try:
                async with http.get(f"{base}/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)


def service_env(nats_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUESTLOG_")}
    env.update(
        QUESTLOG_NATS_URL=nats_url,
        QUESTLOG_REDIS_URL=redis_url,
        QUESTLOG_JWT_SECRET="test-secret-test-secret-test-secret",
        QUESTLOG_LOG_LEVEL="WARNING",
        QUESTLOG_ACK_WAIT_S="5",  # what a killed service held comes back in 5 s, not 30
    )
    env.update(extra)
    return env
