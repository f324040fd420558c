"""`questlog up` and the command line as a user runs them: real subprocesses."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import jwt
import pytest

from questlog.services.runtime.embedded import free_port

QUESTLOG = str(Path(sys.executable).parent / "questlog")


def children_of(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def env_for(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUESTLOG_")}
    env.update(
        QUESTLOG_HTTP_PORT=str(free_port()),
        QUESTLOG_NATS_PORT=str(free_port()),
        QUESTLOG_REDIS_PORT=str(free_port()),
        QUESTLOG_DATA_DIR=str(tmp / ".questlog"),
    )
    env.update(extra)
    return env


async def start_up(env: dict[str, str]) -> tuple[asyncio.subprocess.Process, list[str]]:
    proc = await asyncio.create_subprocess_exec(
        QUESTLOG, "up", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    lines: list[str] = []
    assert proc.stdout
    async with asyncio.timeout(60):
        while True:
            line = (await proc.stdout.readline()).decode()
            if not line:
                err = (await proc.stderr.read()).decode() if proc.stderr else ""
                raise AssertionError(f"questlog up exited before it was up: {lines} {err}")
            lines.append(line.rstrip())
            if line.startswith("Ctrl-C"):
                return proc, lines


@pytest.mark.slow
async def test_up_serves_healthz_and_ctrl_c_leaves_no_process(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    proc, lines = await start_up(env)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{env['QUESTLOG_HTTP_PORT']}/healthz") as resp:
                assert resp.status == 200
            async with http.get(f"http://127.0.0.1:{env['QUESTLOG_HTTP_PORT']}/readyz") as resp:
                assert resp.status == 200
        token = lines[lines.index("dev token for player dev-player (24 h):") + 1]
        secret = (tmp_path / ".questlog" / "jwt-secret").read_text().strip()
        assert jwt.decode(token, secret, algorithms=["HS256"])["sub"] == "dev-player"
        servers = children_of(proc.pid)
        assert len(servers) == 2, f"expected nats-server and redis-server under questlog up, got {servers}"
    finally:
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            assert await proc.wait() == 0
    assert not [pid for pid in servers if alive(pid)], "a server outlived questlog up"


@pytest.mark.slow
async def test_kill_9_of_up_takes_its_servers_down(tmp_path: Path) -> None:
    proc, _ = await start_up(env_for(tmp_path))
    servers = children_of(proc.pid)
    assert len(servers) == 2, f"expected nats-server and redis-server under questlog up, got {servers}"
    proc.kill()
    await proc.wait()
    async with asyncio.timeout(10):
        while [pid for pid in servers if alive(pid)]:
            await asyncio.sleep(0.05)  # the kernel delivers PDEATHSIG; nothing to await but the exit


async def test_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", int(env["QUESTLOG_HTTP_PORT"]))
    try:
        proc = await asyncio.create_subprocess_exec(
            QUESTLOG, "up", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        _out, err = await proc.communicate()
    finally:
        blocker.close()
    assert proc.returncode == 1
    text = err.decode().strip()
    assert "Traceback" not in text
    assert len(text.splitlines()) == 1
    assert f"port {env['QUESTLOG_HTTP_PORT']}" in text and "QUESTLOG_HTTP_PORT" in text


async def test_token_command_signs_with_configured_secret(tmp_path: Path) -> None:
    env = env_for(tmp_path, QUESTLOG_JWT_SECRET="s3cret-s3cret-s3cret-s3cret-s3cret")
    proc = await asyncio.create_subprocess_exec(
        QUESTLOG, "token", "--player", "p-7", "--admin", env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    claims = jwt.decode(out.decode().strip(), "s3cret-s3cret-s3cret-s3cret-s3cret", algorithms=["HS256"])
    assert claims["sub"] == "p-7" and claims["roles"] == ["admin"]


async def test_bad_setting_is_refused_with_its_name(tmp_path: Path) -> None:
    env = env_for(tmp_path, QUESTLOG_TIME_SCALE="fast")
    proc = await asyncio.create_subprocess_exec(
        QUESTLOG, "token", "--player", "p", env=env, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    assert proc.returncode == 2
    assert "QUESTLOG_TIME_SCALE" in err.decode()


def test_a_service_process_collects_garbage_in_fewer_larger_passes() -> None:
    """`questlog run` and `questlog up` call tune_gc once started; a fresh interpreter shows what it sets."""
    probe = (
        "import gc; from questlog.services.cli.stack import GC_THRESHOLDS, tune_gc; tune_gc(); "
        "print(gc.get_threshold() == GC_THRESHOLDS, gc.get_threshold()[0] >= 10_000, gc.get_freeze_count() > 1000)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True", "True"], out


async def test_run_names_the_unknown_service_and_what_exists(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        QUESTLOG, "run", "processor,rewards", env=env_for(tmp_path), stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    assert proc.returncode == 2
    assert "'rewards'" in err.decode() and "reward" in err.decode().split("choose from", 1)[1]
