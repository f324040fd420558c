"""`questlog bench` at toy sizes: each scenario runs to the end and writes its figures.

Only the shape of the result is checked (and the correctness checks a
scenario makes, such as gap-free recovery): a test never asserts a wall-clock
figure, which on a shared 2-core machine would only measure the neighbours.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

QUESTLOG = str(Path(sys.executable).parent / "questlog")


def bench(tmp_path: Path, *args: str) -> dict[str, Any]:
    out = tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUESTLOG_")}  # always a private stack
    proc = subprocess.run(
        [QUESTLOG, "bench", *args, "--out", str(out)], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = list(out.glob(f"{args[0]}-*.json"))
    assert len(files) == 1, files
    result = json.loads(files[0].read_text())
    assert result["scenario"] == args[0]
    assert result["machine"]["nproc"] >= 1 and result["machine"]["cpu_model"]
    assert result["checks_passed"] is True
    return result


def test_append(tmp_path: Path) -> None:
    f = bench(tmp_path, "append", "--players", "10", "--duration", "0.5")["figures"]
    assert f["raw"]["appends"] > 0 and f["store"]["appends"] > 0
    assert f["ratio"] > 0 and f["store"]["latency"]["p99_ms"] > 0


def test_load(tmp_path: Path) -> None:
    result = bench(tmp_path, "load", "--players", "20", "--duration", "3")
    f = result["figures"]
    assert f["commands_ok"] > 0 and f["commands_per_s"] > 0
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        assert f["command_latency"]["queue.enqueue"][key] > 0
        assert f["delivery_latency"][key] > 0
    assert f["events_per_s"] > 0 and f["gateway_rss_mb_connected"] > 0
    assert f["clients_gap_free"] == 20
    assert {c["name"] for c in f["cpu"]} >= {"gateway", "commands", "nats-server"}
    assert {t["name"] for t in result["targets"]} == {"enqueue p99", "delivery p99"}


def test_load_idle(tmp_path: Path) -> None:
    f = bench(tmp_path, "load", "--idle", "50", "--duration", "1")["figures"]
    assert f["connections"] == 50 and f["gateway_rss_mb_after"] > 0
    assert "gateway_kb_per_connection" in f


def test_reconnect_storm(tmp_path: Path) -> None:
    """Two gateways: every client resumes on the other one than it left."""
    f = bench(tmp_path, "reconnect-storm", "--players", "20", "--events", "3", "--gateways", "2")["figures"]
    assert f["recovered"] == 20 and f["gap_free"] == 20 and f["all_recovered_s"] > 0
    assert f["gateways"] == 2 and {"gateway", "gateway-1"} <= {c["name"] for c in f["cpu"]}


def test_rebuild(tmp_path: Path) -> None:
    f = bench(tmp_path, "rebuild", "--players", "10", "--events", "500")["figures"]
    assert f["events"] == 500 and f["rebuilt_players"] == 10
    assert f["raw_per_s"] > 0 and f["rebuild_per_s"] > 0 and f["ratio"] > 0


def test_chaos(tmp_path: Path) -> None:
    f = bench(tmp_path, "chaos", "--players", "10", "--duration", "5")["figures"]
    assert sum(f["kills"].values()) >= 1
    check = f["check"]
    assert check["players"] == 10 and check["events"] > 0
    assert check["not_dense"] == check["duplicate_rewards"] == check["lost_acknowledged"] == 0


MIX = {"queue.get", "player.get", "queue.enqueue", "queue.reorder", "queue.cancel"}


def test_players_open_loop_on_two_workers(tmp_path: Path) -> None:
    workers = ("commands,processor,reward", "projector,snapshotter,presence,notifier")
    args = ("--players", "20", "--interval", "1", "--duration", "4", "--warmup", "1", "--workers", *workers)
    result = bench(tmp_path, "players", *args)
    f = result["figures"]
    assert f["mode"] == "open-loop" and set(f["mix"]) == MIX and abs(sum(f["mix"].values()) - 1) < 1e-9
    w = f["window"]
    assert w["players"] == 20 and w["commands_ok"] > 0 and w["stored_events"] > 0
    assert set(w["command_latency"]) <= MIX | {"all"} and w["command_latency"]["all"]["p99_ms"] > 0
    assert w["delivery_latency"]["count"] > 0 and w["nats_msgs_per_stored_event"] > 0
    assert w["system_cpu_ms_per_stored_event"] > 0
    names = {c["name"] for c in w["cpu"]}
    assert names >= {"gateway", "commands+processor+reward", "nats-server", "bench (load generator)"}
    check = f["check"]
    assert check["players"] == 20 and check["steps_completed"] == check["rewards_granted"] > 0
    assert f["clients_resumed_with_state"] == 0, "no client fell behind at this size"
    assert {t["name"] for t in result["targets"]} == {"enqueue p99", "delivery p99", "system CPU per stored event"}


def test_players_saturate(tmp_path: Path) -> None:
    result = bench(tmp_path, "players", "--saturate", "--players", "10", "--duration", "3", "--warmup", "1")
    f = result["figures"]
    assert f["mode"] == "saturate" and f["time_scale"] < 0.01
    assert f["raw_appends_per_s"] > 0 and f["window"]["stored_events_per_s"] > 0 and f["saturate_ratio"] > 0
    assert "stored events/s ÷ raw OCC appends/s" in {t["name"] for t in result["targets"]}


def test_players_find_capacity_then_overload(tmp_path: Path) -> None:
    args = ("--players", "10", "--step", "5", "--interval", "1", "--duration", "4", "--warmup", "1")
    result = bench(tmp_path, "players", "--overload", "3", *args)
    f = result["figures"]
    assert [s["players"] for s in f["capacity_steps"]][:2] == [5, 10]
    o = f["overload"]
    assert o["factor"] == 3 and o["capacity_players"] == f["capacity_players"] > 0
    assert o["offered_commands_per_s"] > o["capacity_commands_per_s"] and o["admitted"] > 0
    assert {t["name"] for t in result["targets"]} >= {
        "admitted p99 during overload",
        "back within 20 % of the p99 before",
        "players held at one command per 10 s",
    }


def test_players_overload_from_a_given_capacity(tmp_path: Path) -> None:
    args = ("--capacity", "6", "--interval", "1", "--duration", "4", "--warmup", "1")
    result = bench(tmp_path, "players", "--overload", "2", *args)
    f = result["figures"]
    assert "capacity_steps" not in f or not f["capacity_steps"], "a given capacity is not searched for"
    o = f["overload"]
    assert o["capacity_players"] == 6 and f["check"]["players"] == 6, "the capacity's players, not the search's most"
    assert o["offered_commands_per_s"] > o["capacity_commands_per_s"]
