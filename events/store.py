"""The JetStream event store: append with optimistic concurrency, read, replay.

One player is one aggregate, stored under `players.<id>.events.<type>`. An
append names the last stream sequence the writer saw for the whole aggregate
(`Nats-Expected-Last-Subject-Sequence` with the `players.<id>.events.>`
wildcard as its subject); the server refuses it if anything landed since.
Several events of one decision go in one atomic batch: all or none.

Each append also points back at the aggregate's previous append: its first
event carries `Questlog-Prev-Seq` (the sequence it was appended after), the
others `Questlog-Append-Index` (how far they are from the first; a batch is
stored at consecutive sequences). A resuming reader walks these pointers back
from the aggregate's last event with exact gets, instead of a subject-filtered
scan whose cost on the server grows with everything stored since.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping, Sequence
from typing import Protocol

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import ConsumerConfig, DeliverPolicy
from opentelemetry import propagate, trace

from . import codec
from .errors import AppendFailed, ConcurrencyConflict, DuplicateAppend, ReadTimedOut
from .registry import EventRegistry, default_registry
from .schema import NewEvent, Recorded
from .subjects import EVENTS_WILDCARD, event_subject, player_events

ERR_WRONG_LAST_SEQUENCE = 10071
ERR_BATCH_DUPLICATE_MSG_ID = 10201
READ_BATCH = 500
# A read from a version this close to the end walks the back-pointers (one get
# per append); farther back, a binary search and a forward scan cost less.
WALK_LIMIT = 1024
PREV_SEQ = "Questlog-Prev-Seq"
APPEND_INDEX = "Questlog-Append-Index"
APPEND_END = "Questlog-Append-End"
EPOCH_TTL_S = 10.0


def ends_its_append(headers: Mapping[str, str]) -> bool:
    """Whether a stored event is the last of the append that wrote it.

    An append of several events is one atomic batch; its last event carries
    `Questlog-Append-End` (and the server keeps `Nats-Batch-Commit` on it, which
    is all events stored before that header had). A state folded up to an
    event that does not end its append is one the log never rested at.
    """
    return "Nats-Batch-Id" not in headers or APPEND_END in headers or "Nats-Batch-Commit" in headers


def decode_stored(msg: Msg, registry: EventRegistry) -> Recorded:
    """A stored event as a direct get answers it or the stream republishes it (its sequence in
    `Nats-Sequence`), or as a consumer is handed it (its sequence in the delivery's metadata)."""
    seq = int((msg.headers or {}).get("Nats-Sequence", "0")) or (msg.metadata.sequence.stream if msg.reply else 0)
    return codec.decode(msg.data, registry, seq)


class Position(msgspec.Struct, frozen=True):
    """Where an aggregate stands: its last version and that event's stream sequence."""

    version: int = 0
    seq: int = 0


class Tail(msgspec.Struct, frozen=True):
    """A player's position and the events after a version (None: too far behind, or past the end)."""

    position: Position
    events: list[Recorded] | None


class _ApiError(msgspec.Struct):
    code: int = 0
    err_code: int = 0
    description: str = ""


class _PubAck(msgspec.Struct):
    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: _ApiError | None = None


_ack_decoder = msgspec.json.Decoder(_PubAck)
_json = msgspec.json.Encoder()


def _at_least(query: dict[str, object], seq: int) -> dict[str, object]:
    """A direct get only a replica holding `seq` may answer (nats-server 2.12+, ADR-53)."""
    if seq > 0:
        query["min_last_seq"] = seq
    return query


class _Replies:
    """One wildcard inbox subscription for all of a store's batched direct gets.

    A batched get answers with many messages on one reply subject, so it cannot
    use request/reply; a subscription per read would cost a SUB and an UNSUB
    on the server each time, this costs one per store.
    """

    def __init__(self, nc: NATS) -> None:
        self._nc = nc
        self._prefix = ""
        self._queues: dict[str, asyncio.Queue[Msg]] = {}
        self._ready: asyncio.Task[None] | None = None
        self._count = 0

    async def open(self) -> tuple[str, asyncio.Queue[Msg]]:
        if self._ready is None:
            self._prefix = self._nc.new_inbox()
            self._ready = asyncio.ensure_future(self._subscribe())
        await asyncio.shield(self._ready)
        self._count += 1
        token = str(self._count)
        queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._queues[token] = queue
        return f"{self._prefix}.{token}", queue

    def close(self, reply: str) -> None:
        self._queues.pop(reply.rsplit(".", 1)[1], None)

    async def _subscribe(self) -> None:
        await self._nc.subscribe(f"{self._prefix}.*", cb=self._route)

    async def _route(self, msg: Msg) -> None:
        queue = self._queues.get(msg.subject.rsplit(".", 1)[1])
        if queue is not None:  # else: a read that gave up early; its leftovers are dropped
            queue.put_nowait(msg)


class AppendObserver(Protocol):
    """Told of every append's outcome and duration (the runtime's metrics implement it)."""

    def append_finished(self, event_types: Iterable[str], outcome: str, seconds: float) -> None: ...


class _Unobserved:
    def append_finished(self, event_types: Iterable[str], outcome: str, seconds: float) -> None:
        pass


class EventStore:
    def __init__(
        self,
        nc: NATS,
        stream: str = "EVENTS",
        registry: EventRegistry | None = None,
        timeout: float = 5.0,
        metrics: AppendObserver | None = None,
        walk_limit: int = WALK_LIMIT,
    ) -> None:
        self._nc = nc
        self._walk_limit = walk_limit
        self._stream = stream
        self._registry = registry or default_registry()
        self._timeout = timeout
        self._replies = _Replies(nc)
        self._epoch: tuple[float, int, str] | None = None  # (when, the connection's reconnects, epoch)
        self._epoch_asked: asyncio.Future[str] | None = None  # the one stream info in flight
        self._stream_changes = 0  # advisories that the stream was created, deleted or updated
        self._advisories: asyncio.Future[None] | None = None
        self._metrics = metrics or _Unobserved()

    @property
    def registry(self) -> EventRegistry:
        return self._registry

    # -- writing -----------------------------------------------------------

    async def append(
        self,
        player_id: str,
        events: Sequence[NewEvent],
        *,
        expected: Position,
        command_id: str | None = None,
        causation_id: str | None = None,
    ) -> list[Recorded]:
        """Append one decision's events after `expected`, or raise.

        `command_id` names a client's command (remembered by the aggregate for
        idempotency); `causation_id` names what caused a service's decision.
        One of them is required: the message id of the i-th event is
        `<player>:<command_id or causation_id>:<i>`, so a retried decision is
        recognised. Raises `ConcurrencyConflict` when the aggregate moved on
        since `expected`, `DuplicateAppend` when this decision already landed.
        """
        if not events:
            return []
        started, outcome = time.perf_counter(), "failed"
        try:
            stored = await self._append(player_id, events, expected, command_id, causation_id)
            outcome = "ok"
            return stored
        except DuplicateAppend:
            outcome = "duplicate"
            raise
        except ConcurrencyConflict:
            outcome = "conflict"
            raise
        finally:
            self._metrics.append_finished((e.event.TYPE for e in events), outcome, time.perf_counter() - started)

    async def _append(
        self,
        player_id: str,
        events: Sequence[NewEvent],
        expected: Position,
        command_id: str | None,
        causation_id: str | None,
    ) -> list[Recorded]:
        key = command_id or causation_id
        if not key:
            raise ValueError("an append needs a command_id or a causation_id")
        recorded = [
            Recorded(
                player_id=player_id,
                version=expected.version + i + 1,
                occurred_at=e.occurred_at,
                event=e.event,
                command_id=command_id,
                causation_id=causation_id,
            )
            for i, e in enumerate(events)
        ]
        # No span of its own (it would cost more than the publish): the caller's
        # span is current, and its context rides in the headers.
        headers_base: dict[str, str] = {}
        if trace.get_current_span().get_span_context().is_valid:  # nothing to carry otherwise
            propagate.inject(headers_base)
        batch_id = uuid.uuid4().hex if len(recorded) > 1 else None
        ack: _PubAck | None = None
        for i, rec in enumerate(recorded):
            headers = dict(headers_base)
            headers["Nats-Msg-Id"] = f"{player_id}:{key}:{i}"
            if i == 0:
                headers["Nats-Expected-Last-Subject-Sequence"] = str(expected.seq)
                headers["Nats-Expected-Last-Subject-Sequence-Subject"] = player_events(player_id)
                headers[PREV_SEQ] = str(expected.seq)
            else:
                headers[APPEND_INDEX] = str(i)
            if batch_id is not None:
                headers["Nats-Batch-Id"] = batch_id
                headers["Nats-Batch-Sequence"] = str(i + 1)
            subject = event_subject(player_id, rec.type)
            body = codec.encode(rec)
            if i < len(recorded) - 1:
                await self._nc.publish(subject, body, headers=headers)
                continue
            if batch_id is not None:
                headers["Nats-Batch-Commit"] = "1"
                headers[APPEND_END] = "1"
            reply = await self._nc.request(subject, body, timeout=self._timeout, headers=headers)
            ack = _ack_decoder.decode(reply.data)
        assert ack is not None
        try:
            return self._settle(player_id, expected, recorded, ack)
        except ConcurrencyConflict as conflict:
            # A retry whose first attempt landed meets its own events: say so.
            landed = await self.read(
                player_id, after_seq=expected.seq, limit=len(recorded), at_least_seq=conflict.actual_seq or 0
            )
            mine = (command_id, causation_id)
            if len(landed) == len(recorded) and all((r.command_id, r.causation_id) == mine for r in landed):
                raise DuplicateAppend(player_id, f"{player_id}:{key}", landed) from None
            raise

    def _settle(self, player_id: str, expected: Position, recorded: list[Recorded], ack: _PubAck) -> list[Recorded]:
        if ack.error is not None:
            err = ack.error
            if err.err_code == ERR_WRONG_LAST_SEQUENCE:
                raise ConcurrencyConflict(player_id, expected.seq, _trailing_int(err.description))
            if err.err_code == ERR_BATCH_DUPLICATE_MSG_ID:
                raise ConcurrencyConflict(player_id, expected.seq, None)  # resolved by the caller above
            raise AppendFailed(f"append for {player_id} refused: {err.description} ({err.err_code})")
        if ack.duplicate:
            raise ConcurrencyConflict(player_id, expected.seq, ack.seq)  # resolved by the caller above
        first = ack.seq - len(recorded) + 1
        return [msgspec.structs.replace(r, seq=first + i) for i, r in enumerate(recorded)]

    # -- reading -----------------------------------------------------------

    async def read(
        self,
        player_id: str,
        *,
        after_seq: int = 0,
        from_version: int = 1,
        to_version: int | None = None,
        limit: int | None = None,
        at_least_seq: int = 0,
    ) -> list[Recorded]:
        """A player's events in order, from stream sequence `after_seq + 1`.

        Uses batched direct gets (one request per `READ_BATCH` events, no consumer),
        so loading an aggregate costs no server-side state. Reading from a version
        near the end (a client resuming) walks the back-pointers from the last
        event; farther back it first finds where that version sits in the
        stream, so it costs O(log n) small requests, not a scan of the history.

        `at_least_seq`: the stream is known to hold this sequence (an event a
        consumer was handed, a conflict's last sequence). Any replica may answer
        a direct get; asked with `min_last_seq`, one that is behind passes the
        request to the leader instead of answering without it.
        """
        if from_version > 1 and after_seq == 0:
            last = await self._last_msg(player_id, at_least_seq)
            walked = (
                await self._walk_back(last, self._decode(last), player_id, from_version) if last is not None else []
            )
            if walked is not None:
                if to_version is not None:
                    walked = [r for r in walked if r.version <= to_version]
                return walked[:limit] if limit is not None else walked
        return await self._scan(player_id, after_seq, from_version, to_version, limit, at_least_seq)

    async def since(self, player_id: str, version: int, limit: int) -> Tail:
        """Where the player stands and, if at most `limit` behind, the events after `version`.

        What a resume needs, for one request more than the events themselves:
        the last event gives the position and starts the walk back.
        """
        last = await self._last_msg(player_id)
        if last is None:
            return Tail(Position(), [] if version == 0 else None)
        newest = self._decode(last)
        position = Position(newest.version, newest.seq)
        if version > newest.version or newest.version - version > limit:
            return Tail(position, None)
        if version == newest.version:
            return Tail(position, [])
        events = await self._walk_back(last, newest, player_id, version + 1)
        if events is None:
            events = await self._scan(player_id, 0, version + 1, newest.version, None)
        return Tail(position, events)

    async def _scan(
        self,
        player_id: str,
        after_seq: int,
        from_version: int,
        to_version: int | None,
        limit: int | None,
        at_least_seq: int = 0,
    ) -> list[Recorded]:
        """Batched subject-filtered gets from `after_seq` (found by binary search if 0 and a version is asked)."""
        if from_version > 1 and after_seq == 0:
            after_seq = await self._seq_before(player_id, from_version)
            if after_seq < 0:
                return []
        out: list[Recorded] = []
        # aclosing: leaving early must unsubscribe now, not whenever the generator is collected
        batches_from = self._direct_batches(player_events(player_id), after_seq + 1, at_least_seq)
        async with contextlib.aclosing(batches_from) as batches:
            async for rec in batches:
                if rec.version < from_version:
                    continue
                if to_version is not None and rec.version > to_version:
                    break
                out.append(rec)
                if limit is not None and len(out) >= limit:
                    break
        return out

    async def _walk_back(self, last: Msg, newest: Recorded, player_id: str, from_version: int) -> list[Recorded] | None:
        """The events from `from_version` to `last` (the player's last, decoded: `newest`), by exact gets along
        the back-pointers.

        None when the walk cannot be taken (too far back, events stored before
        the pointers existed, anything inconsistent): the caller scans instead.
        """
        if newest.version < from_version:
            return []
        if newest.version - from_version >= self._walk_limit:
            return None
        found = [newest]  # newest first
        fetched: dict[int, Msg] = {}
        mine = player_events(player_id)[:-1]  # "players.<id>.events."
        msg, rec = last, newest
        while rec.version > from_version:
            headers = msg.headers or {}
            try:
                if APPEND_INDEX in headers:  # the rest of its append lies just before it
                    index = int(headers[APPEND_INDEX])
                    prev = rec.seq - 1
                    if prev not in fetched and index > 0:
                        for m in await self._get_run(rec.seq - index, index):
                            fetched[int((m.headers or {}).get("Nats-Sequence", "0"))] = m
                elif PREV_SEQ in headers:
                    prev = int(headers[PREV_SEQ])
                else:
                    return None  # stored before the pointers
            except ValueError:
                return None  # a pointer that is not a number: not written by this store
            got = fetched.pop(prev, None) or await self._get(prev)
            if got is None or not (got.headers or {}).get("Nats-Subject", "").startswith(mine):
                return None  # gone, or another player's: never decode what is not ours
            msg, older = got, self._decode(got)
            if older.player_id != player_id or older.version != rec.version - 1:
                return None
            found.append(older)
            rec = older
        found.reverse()
        return found

    async def _direct(self, query: dict[str, object]) -> tuple[Msg, str | None]:
        """One direct get: the answer and its status (None: a message was found)."""
        try:
            msg = await self._nc.request(
                f"$JS.API.DIRECT.GET.{self._stream}", _json.encode(query), timeout=self._timeout
            )
        except NatsTimeout:
            raise ReadTimedOut(f"direct get on {self._stream} timed out") from None
        return msg, (msg.headers or {}).get("Status")

    async def _batch(self, query: dict[str, object]) -> AsyncGenerator[Msg]:
        """A batched direct get's answers, the status message that ends them (204, 404…) last."""
        reply, replies = await self._replies.open()
        try:
            await self._nc.publish(f"$JS.API.DIRECT.GET.{self._stream}", _json.encode(query), reply=reply)
            while True:
                try:
                    msg = await asyncio.wait_for(replies.get(), self._timeout)
                except TimeoutError:
                    raise ReadTimedOut(f"direct get on {self._stream} timed out") from None
                yield msg
                if (msg.headers or {}).get("Status") is not None:
                    return
        finally:
            self._replies.close(reply)

    async def _last_msg(self, player_id: str, at_least_seq: int = 0) -> Msg | None:
        msg, status = await self._direct(_at_least({"last_by_subj": player_events(player_id)}, at_least_seq))
        if status == "404":
            return None
        if status is not None:
            raise AppendFailed(f"direct get failed: {status} {msg.headers}")
        return msg

    async def _get(self, seq: int) -> Msg | None:
        """The message at `seq` (one exact direct get); None if it is gone."""
        msg, status = await self._direct({"seq": seq})
        return None if status is not None else msg

    async def _get_run(self, first_seq: int, count: int) -> list[Msg]:
        """`count` consecutive messages from `first_seq`, whatever their subject (one batched get)."""
        async with contextlib.aclosing(self._batch({"seq": first_seq, "batch": count})) as answers:
            return [m async for m in answers if (m.headers or {}).get("Status") is None]

    async def _first_from(self, player_id: str, seq: int) -> Recorded | None:
        """The player's first event at stream sequence `seq` or later (one direct get)."""
        msg, status = await self._direct({"seq": seq, "next_by_subj": player_events(player_id)})
        return None if status is not None else self._decode(msg)

    async def _seq_before(self, player_id: str, version: int) -> int:
        """The stream sequence after which the player's `version` is found; -1 if it does not exist.

        Versions grow with stream sequences, so a binary search over sequences
        finds it; each probe jumps to the event it actually found.
        """
        last = await self.position(player_id)
        if version > last.version:
            return -1
        lo, hi = 1, last.seq  # the sequence of `version` lies in [lo, hi]
        while lo < hi:
            mid = (lo + hi) // 2
            found = await self._first_from(player_id, mid)
            if found is None or found.version > version:
                hi = mid - 1  # nothing of the player in [mid, found) and found is later
            elif found.version < version:
                lo = found.seq + 1
            else:
                return found.seq - 1
        return lo - 1

    async def _direct_batches(self, subject: str, start_seq: int, at_least_seq: int = 0) -> AsyncGenerator[Recorded]:
        seq = start_seq
        while True:
            pending = 0
            query = _at_least({"seq": seq, "next_by_subj": subject, "batch": READ_BATCH}, at_least_seq)
            async with contextlib.aclosing(self._batch(query)) as answers:
                async for msg in answers:
                    status = (msg.headers or {}).get("Status")
                    if status == "404":
                        return
                    if status == "204":  # end of this batch
                        pending = int((msg.headers or {}).get("Nats-Num-Pending", "0"))
                        break
                    if status is not None:
                        raise AppendFailed(f"direct get failed: {status} {msg.headers}")
                    rec = self._decode(msg)
                    seq = rec.seq + 1
                    yield rec
            if pending == 0:
                return

    def _decode(self, msg: Msg) -> Recorded:
        return decode_stored(msg, self._registry)

    async def at(self, seq: int) -> Recorded | None:
        """The event stored at `seq` (one exact direct get); None if there is none."""
        msg = await self._get(seq)
        return self._decode(msg) if msg is not None and msg.data else None

    async def position(self, player_id: str, at_least_seq: int = 0) -> Position:
        """The aggregate's last version and sequence, from one direct get."""
        msg = await self._last_msg(player_id, at_least_seq)
        if msg is None:
            return Position()
        rec = self._decode(msg)
        return Position(rec.version, rec.seq)

    async def replay(
        self, *, subject: str = EVENTS_WILDCARD, start_seq: int = 1, follow: bool = False
    ) -> AsyncIterator[Recorded]:
        """Every event matching `subject` in stream order, through an ordered consumer.

        Stops at the end of the log unless `follow`, in which case it tails forever.
        """
        js = self._nc.jetstream()
        if not follow and not await self._any_from(subject, start_seq):
            return
        sub = await js.subscribe(
            subject,
            stream=self._stream,
            ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq),
        )
        try:
            while True:
                msg = await sub.next_msg(timeout=None if follow else self._timeout * 6)
                yield self._decode(msg)
                if not follow and msg.metadata.num_pending == 0:
                    return
        finally:
            await sub.unsubscribe()

    async def _any_from(self, subject: str, start_seq: int) -> bool:
        """Whether any event matches `subject` at or after `start_seq` (one direct get)."""
        _, status = await self._direct({"seq": start_seq, "next_by_subj": subject})
        return status is None

    async def last_seq(self) -> int:
        """The stream's last sequence: where a follower that wants only new events starts."""
        info = await self._nc.jetstream().stream_info(self._stream)
        return info.state.last_seq

    async def epoch(self) -> str:
        """The incarnation of the log: the stream's creation time. A new stream, a new epoch.

        Asked once per `EPOCH_TTL_S` at most (every resume needs it, and a stream
        info costs the server far more than a read). The server's advisory that
        the stream was deleted or created drops the cached epoch at once, and so
        does a reconnect (advisories sent meanwhile were missed): a recreated
        stream is never given out under its predecessor's epoch.
        """
        now = time.monotonic()
        cached = self._epoch
        if cached is not None and now - cached[0] < EPOCH_TTL_S and cached[1] == self._nc.stats["reconnects"]:
            return cached[2]
        # A reconnect storm comes after a quiet spell, when the cached epoch has
        # expired: its thousand resumes share one stream info, not one each.
        if self._epoch_asked is None:
            self._epoch_asked = asyncio.ensure_future(self._ask_epoch())
            self._epoch_asked.add_done_callback(self._epoch_answered)
        return await asyncio.shield(self._epoch_asked)

    async def _ask_epoch(self) -> str:
        if self._advisories is None:
            self._advisories = asyncio.ensure_future(self._follow_stream_changes())
        try:
            await asyncio.shield(self._advisories)
        except Exception:  # asked again next time; meanwhile the TTL bounds a stale epoch
            self._advisories = None
        changes, reconnects = self._stream_changes, self._nc.stats["reconnects"]
        info = await self._nc.jetstream().stream_info(self._stream)
        created = info.created
        epoch = created.strftime("%Y%m%dT%H%M%S%fZ") if created else "0"
        if changes == self._stream_changes:  # else the answer may predate the change: ask again next time
            self._epoch = (time.monotonic(), reconnects, epoch)
        return epoch

    async def _follow_stream_changes(self) -> None:
        async def changed(msg: Msg) -> None:
            self._stream_changes += 1
            self._epoch = None

        await self._nc.subscribe(f"$JS.EVENT.ADVISORY.STREAM.*.{self._stream}", cb=changed)
        await self._nc.flush()

    def _epoch_answered(self, asked: asyncio.Future[str]) -> None:
        self._epoch_asked = None
        if not asked.cancelled():
            asked.exception()  # retrieved here: each waiter raises it on its own


def _trailing_int(text: str) -> int | None:
    tail = text.rsplit(":", 1)[-1].strip()
    return int(tail) if tail.isdigit() else None
