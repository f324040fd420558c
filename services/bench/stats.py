"""Latency samples and their percentiles, in milliseconds."""

from __future__ import annotations

import math

import msgspec


class LatencySummary(msgspec.Struct, frozen=True):
    """Nearest-rank percentiles of one set of samples (ms)."""

    count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float


class Latencies:
    """Collects samples (seconds in, milliseconds out); cheap to add to from a hot loop."""

    __slots__ = ("_samples",)

    def __init__(self) -> None:
        self._samples: list[float] = []

    def add(self, seconds: float) -> None:
        self._samples.append(seconds)

    def extend(self, seconds: list[float]) -> None:
        self._samples.extend(seconds)

    def __len__(self) -> int:
        return len(self._samples)

    @property
    def samples(self) -> list[float]:
        return self._samples

    def summary(self) -> LatencySummary:
        return summarize(self._samples)


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted samples."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize(samples: list[float]) -> LatencySummary:
    ordered = sorted(samples)
    if not ordered:
        return LatencySummary(0, 0.0, 0.0, 0.0, 0.0, 0.0)

    def ms(v: float) -> float:
        return round(v * 1000, 3)

    return LatencySummary(
        count=len(ordered),
        p50_ms=ms(percentile(ordered, 50)),
        p95_ms=ms(percentile(ordered, 95)),
        p99_ms=ms(percentile(ordered, 99)),
        max_ms=ms(ordered[-1]),
        mean_ms=ms(sum(ordered) / len(ordered)),
    )
