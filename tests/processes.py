"""Services as real subprocesses (`questlog run <service>`), for crash tests."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aiohttp

QUESTLOG = str(Path(sys.executable).parent / "questlog")


class ServiceProcess:
    def __init__(self, service: str, env: dict[str, str], log_dir: Path) -> None:
        self.service, self.env, self.log_dir = service, env, log_dir
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self) -> ServiceProcess:
        self.starts += 1
        log = (self.log_dir / f"{self.service}-{id(self)}-{self.starts}.log").open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            QUESTLOG, "run", self.service, env=self.env, stdout=log, stderr=log, stdin=asyncio.subprocess.DEVNULL
        )
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
