"""`task.progress`: sent beside every forwarded `task.started` and `task.step_completed`."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from .conftest import RawSocket


def parse(at: str) -> datetime:
    return datetime.fromisoformat(at.replace("Z", "+00:00"))


async def frames_until(sock: RawSocket, done, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Every notification, in arrival order, until `done(last)` holds."""
    out: list[dict[str, Any]] = [m for m in sock.notes if "method" in m]
    sock.notes.clear()
    async with asyncio.timeout(timeout):
        while not out or not done(out[-1]):
            message = await sock.recv(timeout)
            if isinstance(message, dict) and "method" in message:
                out.append(message)
    return out


def is_event(kind: str):
    return lambda m: m["method"] == "event" and m["params"]["type"] == kind


async def test_each_start_and_step_is_followed_by_its_progress(open_socket, token, player_id) -> None:
    sock = await open_socket()
    assert "result" in await sock.request("session.hello", {"token": token(player_id)})
    enqueued = await sock.request(
        "queue.enqueue", {"activity": "harvesting", "target": "oak_log", "quantity": 3, "command_id": "c-1"}
    )
    task_id = enqueued["result"]["task"]["task_id"]
    frames = await frames_until(sock, is_event("task.completed"))

    pairs = []
    for i, m in enumerate(frames):
        if m["method"] == "event" and m["params"]["type"] in ("task.started", "task.step_completed"):
            follower = frames[i + 1]
            assert follower["method"] == "task.progress", (m, follower)
            assert "version" not in follower["params"] and "id" not in follower  # ephemeral notification
            pairs.append((m["params"], follower["params"]))
    assert [p["step"] for _, p in pairs] == [0, 1, 2, 3]
    for event, progress in pairs:
        assert progress["task_id"] == task_id and progress["steps"] == 3
        step_seconds = event["data"]["step_seconds"] if event["type"] == "task.started" else progress["step_seconds"]
        left = 3 - progress["step"]
        assert abs(parse(progress["eta"]) - (parse(event["at"]) + timedelta(seconds=step_seconds * left))) < timedelta(
            milliseconds=2
        )
        assert ("step_eta" in progress) == (left > 0)
    assert sum(1 for m in frames if m["method"] == "task.progress") == 4  # nothing else sends it


async def test_a_session_resumed_mid_task_learns_the_task_and_still_reports_progress(
    open_socket, token, player_id
) -> None:
    first = await open_socket()
    hello = (await first.request("session.hello", {"token": token(player_id)}))["result"]
    await first.request("queue.enqueue", {"activity": "harvesting", "target": "oak_log", "quantity": 50})
    started = await frames_until(first, is_event("task.started"))
    at_start = started[-1]["params"]["version"]
    assert "result" in await first.request("queue.pause", {})
    await first.ws.close()

    second = await open_socket()
    resumed = await second.request(
        "session.hello", {"token": token(player_id), "resume": {"epoch": hello["epoch"], "version": at_start}}
    )
    assert resumed["result"]["recovered"] is True  # task.started is not replayed to this session
    assert "result" in await second.request("queue.resume", {})
    frames = await frames_until(second, lambda m: m["method"] == "task.progress")
    progress = frames[-1]["params"]
    assert progress["steps"] == 50 and progress["step"] >= 1
    assert progress["task_id"] == started[-1]["params"]["data"]["task_id"]
    assert "result" in await second.request("queue.cancel", {"task_id": progress["task_id"]})
