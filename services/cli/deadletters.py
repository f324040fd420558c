"""`questlog deadletters`: what the services gave up on, one of them in full, and handing them back.

A dead letter is a message a service's durable consumer failed to handle
`max_deliver` times (`services/runtime/consumer.py`), copied to
`deadletter.<durable>` in the DEADLETTER stream. `redrive` publishes it again
to `deadletter.redrive.<durable>` (with `Questlog-Redrive-Of: <seq>` and a
`Nats-Msg-Id` made from the sequence, so a repeated publish is dropped); the
service's second durable, `<durable>-redrive`, hands it to the same handler
once (`services/runtime/redrive.py`). Everything shown here is read from the
stream itself: a re-drive is the message that says so, and whether the service
has handled it is the position of its re-drive durable.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import msgspec
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from questlog.events import codec
from questlog.events.errors import EventLogError
from questlog.events.registry import EventRegistry
from questlog.services.contract.protocol import rfc3339
from questlog.services.runtime import redrive
from questlog.services.runtime.connections import UnreachableError, Wiring, connect
from questlog.services.runtime.settings import Settings

READ_TIMEOUT_S = 5.0  # the longest wait for the next message of the stream before taking what came as all
ERROR_WIDTH = 60  # characters of the error in the table (all of it in `show` and --json)

HANDLED, WAITING, FAILED_AGAIN = "handled", "waiting", "failed again"

Handler = Callable[[argparse.Namespace, Settings], int]  # an entry of `questlog`'s dispatch table


class Redrive(msgspec.Struct, frozen=True):
    seq: int
    at: datetime
    of: int


class DeadLetter(msgspec.Struct, kw_only=True):
    seq: int
    at: datetime
    consumer: str
    subject: str
    original_seq: int | None
    error: str
    headers: dict[str, str]
    body: bytes
    redriven_from: int | None = None  # a re-drive of this dead letter failed as well
    redrives: list[Redrive] = []
    failed_again: dict[int, int] = {}  # re-drive seq -> the dead letter it became
    status: str | None = None  # of the last re-drive: handled, waiting, failed again

    @property
    def again_as(self) -> int | None:
        """The dead letter the last re-drive became, if it failed too."""
        return self.failed_again.get(self.redrives[-1].seq) if self.redrives else None


class Letters(msgspec.Struct, kw_only=True):
    stream: str
    first_seq: int
    last_seq: int
    dead: list[DeadLetter]
    redrives: dict[int, Redrive]  # by their own sequence
    waiting_for: set[str]  # consumers whose re-drive durable does not exist (yet)

    def find(self, seq: int) -> DeadLetter | None:
        return next((d for d in self.dead if d.seq == seq), None)

    def where(self) -> str:
        """What the stream holds, for a sequence that is not there."""
        if not self.dead:
            return f"{self.stream} holds no dead letters"
        seqs = [d.seq for d in self.dead]
        return f"{self.stream} holds {len(seqs)} dead letter(s), sequences {min(seqs)}–{max(seqs)}"


LettersCommand = Callable[[argparse.Namespace, Wiring, Letters], Awaitable[int]]
UsageCheck = Callable[[argparse.Namespace], str | None]
NOT_POSITIVE = "a dead letter's sequence is a positive number"


def _with_letters(usage: UsageCheck | None = None) -> Callable[[LettersCommand], Handler]:
    """The command, given the DEADLETTER stream as read from the running system; `usage` is checked before."""

    def wrap(command: LettersCommand) -> Handler:
        def run(args: argparse.Namespace, settings: Settings) -> int:
            error = usage(args) if usage else None
            if error:
                print(f"questlog: {error}", file=sys.stderr)
                return 2
            return asyncio.run(_on_letters(command, args, settings))

        return run

    return wrap


async def _on_letters(command: LettersCommand, args: argparse.Namespace, settings: Settings) -> int:
    if not settings.nats_url:
        settings = msgspec.structs.replace(settings, nats_url=f"nats://127.0.0.1:{settings.nats_port}")
    if not settings.redis_url:  # `connect` wants one; nothing here uses Redis
        settings = msgspec.structs.replace(settings, redis_url=f"redis://127.0.0.1:{settings.redis_port}/0")
    try:
        async with connect(settings, name="questlog-cli", create_streams=False, persistent=False) as wiring:
            stream = settings.streams.dead_letters
            try:
                letters = await read(wiring.js, stream)
            except NotFoundError:
                print(f"questlog: no stream {stream}; has any service started?", file=sys.stderr)
                return 1
            return await command(args, wiring, letters)
    except UnreachableError as exc:
        print(f"questlog: {exc}; is `questlog up` running, or QUESTLOG_NATS_URL set?", file=sys.stderr)
        return 1


def _show_usage(args: argparse.Namespace) -> str | None:
    return NOT_POSITIVE if args.seq < 1 else None


def _redrive_usage(args: argparse.Namespace) -> str | None:
    if any(s < 1 for s in args.seqs):
        return NOT_POSITIVE
    if args.all and args.seqs:
        return "redrive takes sequences or --all, not both"
    if not args.all and not args.seqs:
        return "redrive needs the sequences of the dead letters, or --all"
    if args.consumer and not args.all:
        return "--consumer chooses among --all; name sequences or use --all --consumer NAME"
    return None


@_with_letters()
async def list_command(args: argparse.Namespace, wiring: Wiring, letters: Letters) -> int:
    return list_letters(letters, consumer=args.consumer, as_json=args.json)


@_with_letters(_show_usage)
async def show_command(args: argparse.Namespace, wiring: Wiring, letters: Letters) -> int:
    return show(letters, args.seq, wiring.store.registry, as_json=args.json)


@_with_letters(_redrive_usage)
async def redrive_command(args: argparse.Namespace, wiring: Wiring, letters: Letters) -> int:
    return await redrive_letters(wiring.js, letters, args)


async def read(js: JetStreamContext, stream: str) -> Letters:
    """Every dead letter and re-drive in the stream, linked, with the state of each last re-drive."""
    info = await js.stream_info(stream)
    state = info.state
    letters = Letters(
        stream=stream, first_seq=state.first_seq, last_seq=state.last_seq, dead=[], redrives={}, waiting_for=set()
    )
    if not state.messages:
        return letters
    sub = await js.subscribe(
        f"{redrive.DEAD_LETTER_SUBJECT}.>",
        stream=stream,
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=READ_TIMEOUT_S)
            except TimeoutError:  # what was counted expired meanwhile (max age): that was all
                break
            meta = msg.metadata
            _take(letters, msg.subject, meta.sequence.stream, meta.timestamp, msg.headers or {}, msg.data)
            if meta.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    by_seq = {d.seq: d for d in letters.dead}
    for r in letters.redrives.values():
        if r.of in by_seq:
            by_seq[r.of].redrives.append(r)
    for d in letters.dead:
        source = by_seq.get(d.redriven_from or 0)
        redrive_seq = _int(d.headers.get(redrive.REDRIVE_SEQUENCE))
        if source is not None and redrive_seq is not None:
            source.failed_again[redrive_seq] = d.seq
    await _settle_status(js, letters)
    return letters


def _take(letters: Letters, subject: str, seq: int, at: datetime, headers: dict[str, str], body: bytes) -> None:
    parsed = redrive.parse_subject(subject)
    if parsed is None:
        return
    durable, is_redrive = parsed
    if is_redrive:
        of = _int(headers.get(redrive.REDRIVE_OF))
        if of is not None:
            letters.redrives[seq] = Redrive(seq=seq, at=at, of=of)
        return
    letters.dead.append(
        DeadLetter(
            seq=seq,
            at=at,
            consumer=durable,
            subject=headers.get(redrive.ORIGINAL_SUBJECT, ""),
            original_seq=_int(headers.get(redrive.ORIGINAL_SEQUENCE)),
            error=headers.get(redrive.ERROR, ""),
            headers=headers,
            body=body,
            redriven_from=_int(headers.get(redrive.REDRIVEN_FROM)),
        )
    )


async def _settle_status(js: JetStreamContext, letters: Letters) -> None:
    """Of each last re-drive: failed again (a newer dead letter says so), handled (its durable is past it), waiting."""
    floors: dict[str, int | None] = {}
    for d in letters.dead:
        if not d.redrives:
            continue
        if d.again_as is not None:
            d.status = FAILED_AGAIN
            continue
        if d.consumer not in floors:
            try:
                info = await js.consumer_info(letters.stream, redrive.redrive_durable(d.consumer))
            except NotFoundError:
                floors[d.consumer] = None
                letters.waiting_for.add(d.consumer)
            else:
                floors[d.consumer] = info.ack_floor.stream_seq if info.ack_floor else 0
        floor = floors[d.consumer]
        d.status = HANDLED if floor is not None and floor >= d.redrives[-1].seq else WAITING


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def letter_json(d: DeadLetter) -> dict[str, Any]:
    return {
        "seq": d.seq,
        "at": rfc3339(d.at),
        "consumer": d.consumer,
        "subject": d.subject,
        "original_seq": d.original_seq,
        "error": d.error,
        "redriven_from": d.redriven_from,
        "redrives": [{"seq": r.seq, "at": rfc3339(r.at)} for r in d.redrives],
        "redrive_status": d.status,
        "dead_lettered_again_as": d.again_as,
    }


def redriven_text(d: DeadLetter) -> str:
    if not d.redrives:
        return ""
    last = d.redrives[-1]
    times = f" ({len(d.redrives)}×)" if len(d.redrives) > 1 else ""
    status = f"{FAILED_AGAIN}: #{d.again_as}" if d.status == FAILED_AGAIN else d.status or ""
    return f"#{last.seq} at {rfc3339(last.at)}{times}, {status}"


def list_letters(letters: Letters, *, consumer: str | None, as_json: bool) -> int:
    chosen = [d for d in letters.dead if consumer is None or d.consumer == consumer]
    if not chosen:
        of = f" of consumer {consumer}" if consumer else ""
        # with --json, stdout stays a (here empty) stream of objects
        print(f"no dead letters{of} in {letters.stream}", file=sys.stderr if as_json else sys.stdout)
        return 0
    if as_json:
        encoder = msgspec.json.Encoder()
        for d in chosen:
            sys.stdout.write(encoder.encode(letter_json(d)).decode() + "\n")
        return 0
    table = Table(title=f"dead letters in {letters.stream}")
    for col in ("seq", "at", "consumer", "original", "error", "re-driven"):
        table.add_column(col, overflow="fold")
    for d in chosen:
        error = d.error if len(d.error) <= ERROR_WIDTH else d.error[: ERROR_WIDTH - 1] + "…"
        original = f"{d.subject} #{d.original_seq}" if d.original_seq is not None else d.subject
        table.add_row(str(d.seq), rfc3339(d.at), d.consumer, escape(original), escape(error), redriven_text(d))
    console = Console()
    console.print(table)
    _say_waiting(letters, {d.consumer for d in chosen if d.status == WAITING} & letters.waiting_for)
    return 0


def show(letters: Letters, seq: int, registry: EventRegistry, *, as_json: bool) -> int:
    d = letters.find(seq)
    if d is None:
        r = letters.redrives.get(seq)
        if r is not None:
            print(f"questlog: {seq} is a re-drive of dead letter {r.of}, not a dead letter", file=sys.stderr)
        else:
            print(f"questlog: no dead letter {seq}; {letters.where()}", file=sys.stderr)
        return 1
    event, not_event = _decode(d, registry)
    if as_json:
        out = letter_json(d) | {"headers": d.headers, "event": event}
        if event is None:
            out |= _body_json(d.body) | {"not_an_event": not_event}
        sys.stdout.write(msgspec.json.encode(out).decode() + "\n")
        return 0
    console = Console()
    about = Table.grid(padding=(0, 2))
    about.add_column(style="bold")
    about.add_column(overflow="fold")
    original = f"{d.subject}, sequence {d.original_seq}" if d.original_seq is not None else d.subject
    rows = [
        ("stored at", rfc3339(d.at)),
        ("consumer", d.consumer),
        ("original", original),
        ("error", d.error),
        ("re-driven", redriven_text(d) or "no"),
    ]
    if d.redriven_from is not None:
        rows.append(("came from", f"a re-drive of dead letter {d.redriven_from} that failed as well"))
    for name, value in rows:
        about.add_row(name, escape(value))
    console.print(f"[bold]dead letter {d.seq}[/] in {letters.stream}")
    console.print(about)
    headers = Table(title="headers", title_justify="left")
    headers.add_column("header")
    headers.add_column("value", overflow="fold")
    for k, v in sorted(d.headers.items()):
        headers.add_row(escape(k), escape(v))
    console.print(headers)
    if event is not None:
        console.print(
            f"[bold]event[/] {event['type']} of player {escape(event['player_id'])}, version {event['version']}, "
            f"occurred at {event['occurred_at']}"
        )
        console.print_json(data=event["data"])
    else:
        console.print(f"[bold]body[/] (not an event: {escape(not_event or '')})")
        console.print(escape(d.body.decode("utf-8", errors="replace")), markup=False, highlight=False)
    _say_waiting(letters, {d.consumer} & letters.waiting_for if d.status == WAITING else set())
    return 0


def _decode(d: DeadLetter, registry: EventRegistry) -> tuple[dict[str, Any] | None, str | None]:
    """The event in the body (type, player, version…), or why it is none."""
    try:
        rec = codec.decode(d.body, registry, d.original_seq or 0)
    except EventLogError as exc:
        return None, str(exc)
    return {
        "type": rec.type,
        "schema": rec.event.SCHEMA,
        "player_id": rec.player_id,
        "version": rec.version,
        "occurred_at": rfc3339(rec.occurred_at),
        "command_id": rec.command_id,
        "causation_id": rec.causation_id,
        "data": msgspec.to_builtins(rec.event),
    }, None


def _body_json(body: bytes) -> dict[str, str]:
    try:
        return {"body": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"body": base64.b64encode(body).decode(), "body_encoding": "base64"}


async def redrive_letters(js: JetStreamContext, letters: Letters, args: argparse.Namespace) -> int:
    """Publish each chosen dead letter to its service's re-drive subject; 1 if any was not found or refused."""
    code = 0
    chosen: list[DeadLetter] = []
    skipped = 0
    if args.all:
        for d in letters.dead:
            if args.consumer is not None and d.consumer != args.consumer:
                continue
            if d.redrives and not args.again:
                skipped += 1
                continue
            chosen.append(d)
    else:
        for seq in dict.fromkeys(args.seqs):  # in the order given, each once
            found = letters.find(seq)
            if found is None:
                r = letters.redrives.get(seq)
                what = f"{seq} is a re-drive of dead letter {r.of}" if r else f"no dead letter {seq}; {letters.where()}"
                print(f"questlog: {what}", file=sys.stderr)
                code = 1
            elif found.redrives and not args.again:
                print(
                    f"questlog: dead letter {seq} was re-driven already ({redriven_text(found)}); "
                    "--again re-drives it once more",
                    file=sys.stderr,
                )
                code = 1
            else:
                chosen.append(found)
    done: set[str] = set()
    for d in chosen:
        headers = {k: v for k, v in d.headers.items() if not k.startswith("Nats-")}
        headers[redrive.REDRIVE_OF] = str(d.seq)
        headers["Nats-Msg-Id"] = redrive.redrive_msg_id(d.seq, len(d.redrives) + 1)
        ack = await js.publish(redrive.redrive_subject(d.consumer), d.body, headers=headers, stream=letters.stream)
        if ack.duplicate:
            print(f"questlog: dead letter {d.seq} was re-driven just now by someone else (#{ack.seq})", file=sys.stderr)
            code = 1
            continue
        original = f"{d.subject} #{d.original_seq}" if d.original_seq is not None else d.subject
        print(f"re-drove dead letter {d.seq} ({d.consumer}: {original}) as {ack.seq}")
        done.add(d.consumer)
    if args.all:
        of = f" of consumer {args.consumer}" if args.consumer else ""
        if not chosen:
            print(f"no dead letters{of} to re-drive in {letters.stream}")
        if skipped:
            print(f"skipped {skipped} dead letter(s){of} re-driven already (--again re-drives them too)")
    missing: set[str] = set()
    for consumer in sorted(done):
        try:
            await js.consumer_info(letters.stream, redrive.redrive_durable(consumer))
        except NotFoundError:
            missing.add(consumer)
    _say_waiting(letters, missing)
    return code


def _say_waiting(letters: Letters, consumers: set[str]) -> None:
    """Re-drives nobody takes yet: the durable appears when the service (this version or later) starts."""
    for consumer in sorted(consumers):
        print(
            f"questlog: no consumer {redrive.redrive_durable(consumer)} on {letters.stream} yet: "
            f"re-drives of {consumer} wait until a {consumer} service of this version starts",
            file=sys.stderr,
        )
