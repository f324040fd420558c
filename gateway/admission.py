"""Admission control: a gateway forwards only as many commands as the system answers without queueing.

Past saturation every command used to wait, for seconds. Each gateway keeps a
limit on the commands it has in flight to the commands service and adapts it
to queueing, measured as answer time against its own long-run baseline (the
gradient method of Netflix's concurrency limiters): while recent answers come
within `TOLERANCE` times the baseline the limit may grow; as a queue builds and
they slow down, it shrinks in proportion. A machine that is slow all the time
is not a queue: its baseline follows. Answers slower than `max_latency_s` shrink
it whatever the baseline. A command beyond the limit is answered at once with
-32029 and `retry_after_ms`, before anything is sent: it has no effect.
"""

from __future__ import annotations

import math

TOLERANCE = 2.0  # answers this much slower than the baseline are queueing
SHORT = 10  # answers the recent time averages over
LONG = 2000  # answers the baseline averages over
SMOOTHING = 0.02  # how far one answer moves the limit toward where it should be


class _Average:
    """An exponential moving average over about `n` samples."""

    def __init__(self, n: int) -> None:
        self._alpha = 2 / (n + 1)
        self.value = 0.0

    def add(self, sample: float) -> float:
        self.value = sample if not self.value else self.value + self._alpha * (sample - self.value)
        return self.value


class Admission:
    def __init__(self, *, max_inflight: int, max_latency_s: float = 1.0, min_inflight: int = 1) -> None:
        self.max_inflight = max_inflight
        self.min_inflight = min(min_inflight, max_inflight)
        self.max_latency_s = max_latency_s
        self.limit = float(max_inflight)  # start open: queueing, once measured, closes it
        self.inflight = 0
        self._recent = _Average(SHORT)
        self._baseline = _Average(LONG)
        self.admitted = 0
        self.refused = 0

    def admit(self) -> bool:
        """Whether one more command may be forwarded now; if so, `done` must follow."""
        if self.inflight >= max(self.min_inflight, int(self.limit)):
            self.refused += 1
            return False
        self.inflight += 1
        self.admitted += 1
        return True

    def done(self, seconds: float) -> None:
        """One admitted command was answered (or failed) after `seconds`."""
        busy = self.inflight  # how many were in flight with it
        self.inflight -= 1
        recent = self._recent.add(seconds)
        baseline = self._baseline.add(seconds)
        if baseline > 2 * recent:  # the queue drained: let the baseline come back down faster
            self._baseline.value = baseline = 0.95 * baseline
        gradient = max(0.5, min(1.0, TOLERANCE * baseline / max(recent, 1e-6)))
        if recent > self.max_latency_s:
            gradient = 0.5
        target = self.limit * gradient + math.sqrt(self.limit)  # room for a small queue
        if target > self.limit and 2 * busy < self.limit:
            return  # demand, not the system, holds it back: no evidence for more
        self.limit = min(
            float(self.max_inflight), max(float(self.min_inflight), self.limit + SMOOTHING * (target - self.limit))
        )

    @property
    def latency_s(self) -> float:
        return self._recent.value

    def retry_after_ms(self) -> int:
        """How long a refused client should wait: about two recent answer times, at least 50 ms."""
        return max(50, min(5000, round(2000 * self.latency_s)))
