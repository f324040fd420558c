"""Dead letters and their re-drive: the subjects, the headers, the message a handler is given back.

A consumer that gives up on a message (its deliveries used up) publishes a copy
to `deadletter.<durable>` in the DEADLETTER stream (`consumer._failed`). An
operator hands it back with `questlog deadletters redrive`, which publishes the
dead letter again to `deadletter.redrive.<durable>`, and the service that gave
up consumes its own re-drives with a second durable, `<durable>-redrive`
(`consumer.run_consumer`): each re-drive is handled once by one instance and
acked after the handler succeeded, or dead-lettered again after its deliveries.
"""

from __future__ import annotations

from collections.abc import Mapping

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

DEAD_LETTER_SUBJECT = "deadletter"
REDRIVE_TOKEN = "redrive"

# Written on every dead letter (consumer._failed).
ORIGINAL_SUBJECT = "Questlog-Original-Subject"
ORIGINAL_SEQUENCE = "Questlog-Original-Sequence"
CONSUMER = "Questlog-Consumer"
ERROR = "Questlog-Error"
# The original's Nats-* headers cannot be published again as they are (a batch id,
# an expected sequence, a msg id would make the stream refuse or drop the copy):
# a dead letter keeps them under this prefix, and a re-drive restores them, so a
# handler still reads, say, whether the event ended its append.
KEPT_NATS_PREFIX = "Questlog-Original-"
# On a re-drive: the dead letter it hands back.
REDRIVE_OF = "Questlog-Redrive-Of"
# On a dead letter made when a re-drive failed too: the dead letter and the re-drive it came from.
REDRIVEN_FROM = "Questlog-Redriven-From"
REDRIVE_SEQUENCE = "Questlog-Redrive-Sequence"

# What only describes the dead letter or the re-drive, not the original message.
_BOOKKEEPING = frozenset({ORIGINAL_SUBJECT, ORIGINAL_SEQUENCE, CONSUMER, ERROR, REDRIVEN_FROM, REDRIVE_SEQUENCE})


def dead_letter_subject(durable: str, prefix: str = DEAD_LETTER_SUBJECT) -> str:
    return f"{prefix}.{durable}"


def redrive_subject(durable: str, prefix: str = DEAD_LETTER_SUBJECT) -> str:
    """Where the re-drives of `durable`'s dead letters go (a durable name has no dots)."""
    return f"{prefix}.{REDRIVE_TOKEN}.{durable}"


def redrive_durable(durable: str) -> str:
    """The second durable of a service: it takes the service's re-driven dead letters."""
    return f"{durable}-{REDRIVE_TOKEN}"


def redrive_msg_id(dead_letter_seq: int, attempt: int) -> str:
    """The Nats-Msg-Id of the `attempt`-th re-drive of a dead letter: the server drops a repeated publish."""
    return f"redrive:{dead_letter_seq}:{attempt}"


def parse_subject(subject: str, prefix: str = DEAD_LETTER_SUBJECT) -> tuple[str, bool] | None:
    """(durable, is a re-drive) of a subject in the dead-letter stream; None for anything else."""
    tokens = subject.split(".")
    if tokens[0] != prefix:
        return None
    if len(tokens) == 2:
        return tokens[1], False
    if len(tokens) == 3 and tokens[1] == REDRIVE_TOKEN:
        return tokens[2], True
    return None


def dead_letter_headers(
    headers: Mapping[str, str] | None, *, subject: str, sequence: int, durable: str, error: BaseException
) -> dict[str, str]:
    """A dead letter's headers: the original's, its Nats-* ones kept aside, and where it came from."""
    out: dict[str, str] = {}
    for k, v in (headers or {}).items():
        out[KEPT_NATS_PREFIX + k if k.startswith("Nats-") else k] = v
    out.update(
        {ORIGINAL_SUBJECT: subject, ORIGINAL_SEQUENCE: str(sequence), CONSUMER: durable, ERROR: repr(error)[:500]}
    )
    return out


def dead_letter_again_headers(redrive: Msg, error: BaseException) -> dict[str, str]:
    """The headers of a dead letter for a re-drive that failed as well: the dead letter's, with the new error."""
    headers = redrive.headers or {}
    out = {k: v for k, v in headers.items() if not k.startswith("Nats-") and k != REDRIVE_OF}
    out[ERROR] = repr(error)[:500]
    out[REDRIVE_SEQUENCE] = str(redrive.metadata.sequence.stream)
    if REDRIVE_OF in headers:
        out[REDRIVEN_FROM] = headers[REDRIVE_OF]
    return out


def original_of(nc: NATS, redrive: Msg, *, stream: str, durable: str) -> Msg:
    """The message a handler takes for a re-drive: the original's subject, body and headers.

    `Nats-Sequence` holds the original's stream sequence (as in a direct get or
    a republished event), so `decode_stored` reads it from there, and
    `.metadata` answers as for the original delivery: the original stream,
    sequence and durable; the deliveries, pending count and time are those of
    this re-drive, and the consumer sequence is 0 (the durable never delivered
    it again). The message has no reply subject: `run_consumer` settles the
    re-drive, and a handler acking it itself gets nats-py's NotJSMessageError.

    Raises KeyError or ValueError when the re-drive lacks the original's subject or sequence.
    """
    headers = redrive.headers or {}
    subject = headers[ORIGINAL_SUBJECT]
    sequence = int(headers[ORIGINAL_SEQUENCE])
    given: dict[str, str] = {}
    for k, v in headers.items():
        if k.startswith(KEPT_NATS_PREFIX + "Nats-"):
            given[k.removeprefix(KEPT_NATS_PREFIX)] = v
        elif not k.startswith("Nats-") and k not in _BOOKKEEPING:
            given[k] = v
    given["Nats-Sequence"] = str(sequence)
    delivery = redrive.metadata
    metadata = Msg.Metadata(
        sequence=Msg.Metadata.SequencePair(consumer=0, stream=sequence),
        num_pending=delivery.num_pending,
        num_delivered=delivery.num_delivered,
        timestamp=delivery.timestamp,
        stream=stream,
        consumer=durable,
    )
    return Msg(nc, subject=subject, reply="", data=redrive.data, headers=given, _metadata=metadata)
