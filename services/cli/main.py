"""The `questlog` command line: run the system, mint tokens, and operate the log.

The parser tree is the dispatch table: every command ends in `set_defaults(run=handler)`.
Handlers in other modules are named `module:function` and imported when their command
runs, so `questlog token` or `--help` do not import Redis, the projections or the services.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from questlog.services.runtime.settings import Settings, SettingsError, load_settings

Handler = Callable[[argparse.Namespace, Settings], int]


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line and exit 2: the reason, without the usage block `--help` prints.

    Every subcommand's parser is one too: add_subparsers makes them of the parent's class.
    """

    def error(self, message: str) -> NoReturn:
        one_line = " ".join(message.split())  # a value quoted in the message may hold a newline
        self.exit(2, f"{self.prog}: error: {one_line}\n")


class _Later:
    """The handler `module:function` (relative to this package, or absolute), imported when its command runs."""

    def __init__(self, target: str) -> None:
        self.target = target

    def resolve(self) -> Handler:
        module, function = self.target.split(":")
        handler: Handler = getattr(importlib.import_module(module, __package__), function)
        return handler

    def __call__(self, args: argparse.Namespace, settings: Settings) -> int:
        return self.resolve()(args, settings)


def _parser() -> _Parser:
    p = _Parser(prog="questlog", description="Event-sourced idle-game activity queues.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("up", help="run the whole system on embedded NATS and Redis").set_defaults(run=_up)

    svc = sub.add_parser("run", help="run a service (or several in one process), configured by the environment")
    svc.add_argument("service", help="the service to run, or several: processor,reward (see `questlog services`)")
    svc.set_defaults(run=_run)

    sub.add_parser("services", help="list the services `run` accepts").set_defaults(run=_services)

    tok = sub.add_parser("token", help="print a JWT signed with the configured secret")
    tok.add_argument("--player", required=True, help="the player id (the token's sub)")
    tok.add_argument("--admin", action="store_true", help="grant the admin role")
    tok.add_argument("--ttl", type=int, default=86400, help="lifetime in seconds (default 86400)")
    tok.set_defaults(run=_token)
    ev = sub.add_parser("events", help="read the event log").add_subparsers(dest="events_command", required=True)
    rp = ev.add_parser("replay", help="a player's events as a readable timeline")
    rp.add_argument("--player", required=True)
    rp.add_argument("--from-version", type=int, default=1)
    rp.add_argument("--type", action="append", dest="types", help="only this type (or prefix: task); repeatable")
    rp.add_argument("--json", action="store_true", help="one JSON object per line")
    rp.set_defaults(run=_Later(".operator:replay"))
    tl = ev.add_parser("tail", help="follow new events (Ctrl-C stops)")
    tl.add_argument("--player")
    tl.set_defaults(run=_Later(".operator:tail"))
    ex = ev.add_parser("export", help="the whole log, one JSON object per line")
    ex.add_argument("--format", choices=["jsonl"], default="jsonl")
    ex.set_defaults(run=_Later(".operator:export"))

    st = sub.add_parser("state", help="a player's folded state, now or at a version (time travel)")
    st.add_argument("--player", required=True)
    st.add_argument("--at-version", type=int)
    st.set_defaults(run=_Later(".operator:state"))

    pr = sub.add_parser("projections", help="Redis read models").add_subparsers(
        dest="projections_command", required=True
    )
    rb = pr.add_parser("rebuild", help="rebuild from the log into a fresh keyspace, then swap (blue/green)")
    rb.add_argument("--name", action="append", dest="names", help="queue, profile, leaderboard or stats; repeatable")
    rb.add_argument("--player", help="refold only this player, in place")
    rb.set_defaults(run=_Later(".operator:projections_rebuild"))
    ps = pr.add_parser("status", help="lag and serving namespace of every projection")
    ps.set_defaults(run=_Later(".operator:projections_status"))

    dl = sub.add_parser("deadletters", help="messages a service gave up on: list, show, re-drive").add_subparsers(
        dest="deadletters_command", required=True
    )
    dls = dl.add_parser("list", help="every dead letter, and whether it was re-driven")
    dls.add_argument("--consumer", help="only this service's durable (reward, processor-timers, …)")
    dls.add_argument("--json", action="store_true", help="one JSON object per line")
    dls.set_defaults(run=_Later(".deadletters:list_command"))
    dsh = dl.add_parser("show", help="one dead letter: headers, error, the event or the raw body")
    dsh.add_argument("seq", type=int, metavar="SEQ", help="its sequence in the DEADLETTER stream")
    dsh.add_argument("--json", action="store_true", help="one JSON object")
    dsh.set_defaults(run=_Later(".deadletters:show_command"))
    drd = dl.add_parser("redrive", help="hand dead letters back to the service that gave up on them")
    drd.add_argument("seqs", type=int, nargs="*", metavar="SEQ", help="their sequences in the DEADLETTER stream")
    drd.add_argument("--all", action="store_true", help="every dead letter not re-driven yet")
    drd.add_argument("--consumer", help="with --all: only this service's durable")
    drd.add_argument("--again", action="store_true", help="re-drive also what was re-driven before")
    drd.set_defaults(run=_Later(".deadletters:redrive_command"))

    adm = sub.add_parser("admin", help="operator commands").add_subparsers(dest="admin_command", required=True)
    ins = adm.add_parser("inspect", help="state, queue, pending timers and last events of a player")
    ins.add_argument("--player", required=True)
    ins.set_defaults(run=_Later(".operator:inspect"))

    from questlog.services.bench.runner import add_bench_parser

    add_bench_parser(sub).set_defaults(run=_Later("questlog.services.bench.runner:run_bench"))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"questlog: {exc}", file=sys.stderr)
        return 2
    run: Handler = args.run
    if run not in (_token, _services):  # these only print: no JSON logs, nor the OpenTelemetry they import
        from questlog.services.runtime.logs import configure_logging

        configure_logging(settings.log_level)
    try:
        return run(args, settings)
    except KeyboardInterrupt:
        return 130


def _token(args: argparse.Namespace, settings: Settings) -> int:
    from questlog.events.subjects import valid_player_id
    from questlog.gateway.auth import issue_token

    if not valid_player_id(args.player):
        print("questlog: a player id is 1-64 letters, digits, '-' or '_'", file=sys.stderr)
        return 2
    print(issue_token(settings.with_jwt_secret(), args.player, admin=args.admin, ttl_s=args.ttl))
    return 0


def _services(args: argparse.Namespace, settings: Settings) -> int:
    from .roster import services

    print("\n".join(services()))
    return 0


def _up(args: argparse.Namespace, settings: Settings) -> int:
    from .stack import up

    return asyncio.run(up(settings))


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from .roster import services
    from .stack import run_process

    chosen = services()
    names = [n.strip() for n in args.service.split(",") if n.strip()]
    unknown = [n for n in names if n not in chosen]
    if unknown or not names:
        missing = unknown[0] if unknown else args.service
        print(f"questlog: no service {missing!r}; choose from {', '.join(chosen)}", file=sys.stderr)
        return 2
    return asyncio.run(run_process(settings.with_jwt_secret(), {n: chosen[n] for n in names}))


if __name__ == "__main__":
    raise SystemExit(main())
