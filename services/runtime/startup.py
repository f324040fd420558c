"""Waiting at start-up for what a fresh or failing-over cluster is still making ready.

Several services started together on a new cluster find NATS not listening
yet, no JetStream meta leader, a stream another service is creating, or a
replica group still electing. None of that is a reason to exit: each step is
retried with jittered backoff until the start-up deadline
(`QUESTLOG_STARTUP_TIMEOUT_S`), and the first failure is logged once, saying
what the service waits for.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import nats.errors
from nats.js.errors import APIError, NotFoundError, ServiceUnavailableError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_delay, wait_random_exponential

log = logging.getLogger("questlog.startup")

T = TypeVar("T")

# JetStream errors a cluster answers while it is still forming or electing:
# no suitable peers, temporarily unavailable, not the leader, insufficient
# resources, and the two sides of a stream another process is creating.
TRANSIENT_ERR_CODES = frozenset({10005, 10008, 10009, 10023, 10058, 10059})


class StartupTimeout(RuntimeError):
    """What the service waited for did not become ready before the deadline."""


def transient(exc: BaseException) -> bool:
    """Whether a start-up step that raised `exc` may succeed if tried again."""
    if isinstance(exc, ServiceUnavailableError | NotFoundError):
        return True
    if isinstance(exc, APIError):
        return exc.err_code in TRANSIENT_ERR_CODES or (exc.code or 0) >= 500
    return isinstance(
        exc,
        TimeoutError
        | OSError
        | nats.errors.TimeoutError
        | nats.errors.NoRespondersError
        | nats.errors.NoServersError
        | nats.errors.ConnectionClosedError
        | nats.errors.StaleConnectionError,
    )


async def patiently(what: str, attempt: Callable[[], Awaitable[T]], *, deadline_s: float) -> T:
    """`attempt()`, retried while it fails transiently, for up to `deadline_s` seconds."""
    started = time.monotonic()
    waited = False

    def before_sleep(state: RetryCallState) -> None:
        nonlocal waited
        if not waited:
            waited = True
            error = state.outcome.exception() if state.outcome else None
            log.warning(
                "waiting to %s (%s); retrying for up to %.0f s",
                what,
                f"{type(error).__name__}: {error}" if error else "not ready",
                deadline_s,
            )

    retrying = AsyncRetrying(
        retry=retry_if_exception(transient),
        wait=wait_random_exponential(multiplier=0.05, max=2.0),
        stop=stop_after_delay(deadline_s),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        async for trying in retrying:
            with trying:
                result: T = await attempt()
    except Exception as exc:
        if transient(exc):
            raise StartupTimeout(f"could not {what} within {deadline_s:.0f} s: {type(exc).__name__}: {exc}") from exc
        raise
    if waited:
        log.info("ready to %s after %.1f s", what, time.monotonic() - started)
    return result
