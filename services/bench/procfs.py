"""Readings from /proc: the machine, and the memory and CPU time of the processes under test.

Read from the kernel rather than from the processes themselves, so measuring
a gateway costs it nothing.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import msgspec

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Machine(msgspec.Struct, frozen=True):
    nproc: int
    cpu_model: str
    memory_mb: int
    kernel: str
    python: str
    note: str = ""


def machine() -> Machine:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_kb = _meminfo_kb("MemTotal")
    nproc = os.cpu_count() or 1
    note = (
        f"the load generator, nats-server, redis-server and every service share these {nproc} cores; "
        "figures are for the whole system on one machine, not for a gateway alone"
    )
    return Machine(nproc, model, memory_kb // 1024, platform.release(), platform.python_version(), note)


def _meminfo_kb(key: str) -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kb(pid: int) -> int:
    """Resident memory of `pid` (VmRSS), in KiB; 0 when the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time `pid` has used so far; 0 when the process is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = raw.rsplit(")", 1)[1].split()  # the name may hold spaces; fields after it are fixed
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class CpuUse(msgspec.Struct, frozen=True):
    """CPU over a window, in percent of one core (200 = both cores of a 2-core machine)."""

    name: str
    pid: int
    cpu_percent: float
    rss_mb: float


def machine_busy_seconds() -> float:
    """CPU seconds every core has spent busy since boot (all of /proc/stat's `cpu` line but idle, iowait)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    except (OSError, ValueError, IndexError):
        return 0.0
    return (sum(fields) - fields[3] - fields[4]) / CLOCK_TICKS


def load_average() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0


class CpuWindow:
    """CPU time of named processes between `start()` and `stop()`, and of everything else.

    The machine may be shared (other people's builds and tests): `others` is the
    CPU the whole machine used in the window minus what the named processes used.
    """

    OTHERS = "everything else on the machine"

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = dict(pids)
        self._t0 = 0.0
        self._cpu0: dict[str, float] = {}
        self._busy0 = 0.0

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._busy0 = machine_busy_seconds()
        self._cpu0 = {name: cpu_seconds(pid) for name, pid in self._pids.items()}

    def stop(self) -> list[CpuUse]:
        wall = max(1e-9, time.monotonic() - self._t0)
        out = []
        ours = 0.0
        for name, pid in self._pids.items():
            used = cpu_seconds(pid) - self._cpu0.get(name, 0.0)
            ours += used
            out.append(CpuUse(name, pid, round(100 * used / wall, 1), round(rss_kb(pid) / 1024, 1)))
        others = max(0.0, machine_busy_seconds() - self._busy0 - ours)
        out.append(CpuUse(self.OTHERS, 0, round(100 * others / wall, 1), 0.0))
        return out
