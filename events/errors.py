"""Errors of the event log. Each names one failure a caller can act on."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .schema import Recorded


class EventLogError(Exception):
    """Base of every event-log error."""


class UnknownEventType(EventLogError):
    """The log holds a type this code does not know: never skipped, always raised."""

    def __init__(self, event_type: str, seq: int | None = None) -> None:
        self.event_type = event_type
        self.seq = seq
        where = f" at stream sequence {seq}" if seq else ""
        super().__init__(f"unknown event type {event_type!r}{where}")


class UnsupportedSchema(EventLogError):
    """An event was written by newer code (schema above what this code reads)."""

    def __init__(self, event_type: str, schema: int, known: int) -> None:
        self.event_type, self.schema, self.known = event_type, schema, known
        super().__init__(f"{event_type} schema {schema} is newer than this code reads ({known})")


class MalformedEvent(EventLogError):
    """The stored bytes do not decode into the envelope or its payload."""


class ConcurrencyConflict(EventLogError):
    """Someone else appended to the aggregate since it was loaded; reload and decide again."""

    def __init__(self, player_id: str, expected_seq: int, actual_seq: int | None) -> None:
        self.player_id, self.expected_seq, self.actual_seq = player_id, expected_seq, actual_seq
        super().__init__(f"player {player_id}: expected last sequence {expected_seq}, log is at {actual_seq}")


class DuplicateAppend(EventLogError):
    """This decision's events are already in the log (a retried append)."""

    def __init__(self, player_id: str, msg_id: str, landed: list[Recorded] | None = None) -> None:
        self.player_id, self.msg_id = player_id, msg_id
        self.landed: list[Recorded] = landed or []
        super().__init__(f"player {player_id}: append {msg_id} already landed")


class ReadBehind(EventLogError):
    """A read kept coming back without an event the stream is known to hold (a replica behind)."""

    def __init__(self, player_id: str, needed_seq: int, got_seq: int) -> None:
        self.player_id, self.needed_seq, self.got_seq = player_id, needed_seq, got_seq
        super().__init__(f"player {player_id}: the log read ends at sequence {got_seq}, before {needed_seq}")


class ReadTimedOut(EventLogError):
    """The server did not answer a read in time (overloaded, or electing a leader): try again."""


class AppendFailed(EventLogError):
    """The server refused an append for a reason other than a conflict."""
