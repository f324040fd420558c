"""The one mapping from what went wrong to the protocol's codes (`commands.domain_error`)."""

from __future__ import annotations

import nats.errors
import pytest

from questlog.events.errors import ReadBehind, ReadTimedOut
from questlog.services.commands import domain_error
from questlog.services.contract import protocol
from questlog.services.decision_loop import TooMuchContention
from questlog.services.rules.errors import NotFound, RuleViolation


@pytest.mark.parametrize(
    "exc",
    [
        ReadTimedOut("direct get on EVENTS timed out"),
        nats.errors.TimeoutError(),
        ReadBehind("p1", 10, 9),
        TooMuchContention("p1: 12 conflicting attempts"),
    ],
    ids=["read-timed-out", "nats-timeout", "read-behind", "contention"],
)
def test_a_busy_system_answers_try_again_with_when(exc: Exception) -> None:
    err = domain_error(exc)
    assert err.code == protocol.RATE_LIMITED
    assert err.data is not None and err.data["retry_after_ms"] > 0
    assert "try again" in err.message


def test_domain_errors_keep_their_codes_and_the_rest_is_internal() -> None:
    assert domain_error(NotFound("task", "t1")).code == protocol.NOT_FOUND
    assert domain_error(RuleViolation("queue_full", "the queue is full")).code == protocol.RULE_VIOLATED
    assert domain_error(KeyError("x")).code == protocol.INTERNAL_ERROR
