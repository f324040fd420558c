"""Admission control: a gateway forwards only as many commands as the system answers in time.

Past saturation every command used to wait, for seconds. Each gateway now
keeps a limit on the commands it has in flight to the commands service and
adapts it to how long they take (additive increase, multiplicative decrease,
as TCP does with its window): answers within `target_s` raise the limit by
about one per round of answers, a slower answer cuts it by a fifth (at most
once per `target_s`). A command beyond the limit is answered at once with
-32029 and `retry_after_ms`, before anything is sent: it has no effect.
"""

from __future__ import annotations

import time

DECREASE = 0.8  # the limit after an answer slower than the target, as a fraction


class Admission:
    def __init__(self, *, target_s: float, max_inflight: int, min_inflight: int = 1) -> None:
        self.target_s = target_s
        self.max_inflight = max_inflight
        self.min_inflight = min(min_inflight, max_inflight)
        self.limit = float(max_inflight)  # start open: the first slow answers close it
        self.inflight = 0
        self.latency_s = 0.0  # smoothed answer time, for retry_after_ms
        self._cut_at = 0.0
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
        self.inflight -= 1
        self.latency_s = seconds if not self.latency_s else 0.9 * self.latency_s + 0.1 * seconds
        now = time.monotonic()
        if seconds > self.target_s:
            if now - self._cut_at >= self.target_s:
                self._cut_at = now
                self.limit = max(float(self.min_inflight), self.limit * DECREASE)
        else:
            self.limit = min(float(self.max_inflight), self.limit + 1.0 / max(1.0, self.limit))

    def retry_after_ms(self) -> int:
        """How long a refused client should wait: about what a command takes now, at least 50 ms."""
        return max(50, min(5000, round(2000 * max(self.latency_s, self.target_s))))
