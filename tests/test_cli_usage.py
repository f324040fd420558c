"""`questlog`'s usage errors: one line on stderr and exit 2; and its dispatch table, command by command.

In this process (no servers: every case fails before connecting), and once as
the installed script, whose usage text `bench` used to print in five lines.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from questlog.services.cli.main import _Later, _parser, main

QUESTLOG = str(Path(sys.executable).parent / "questlog")

Cli = Callable[..., tuple[int, str, str]]

COMMANDS = {
    "up",
    "run",
    "services",
    "token",
    "events replay",
    "events tail",
    "events export",
    "state",
    "projections rebuild",
    "projections status",
    "deadletters list",
    "deadletters show",
    "deadletters redrive",
    "admin inspect",
    "bench",
}


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """`questlog …` in this process: (exit code, stdout, stderr)."""
    monkeypatch.setattr("questlog.services.runtime.logs.configure_logging", lambda *a, **k: None)

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        ((), "questlog: error: the following arguments are required: COMMAND"),
        (("bogus",), "questlog: error: argument COMMAND: invalid choice: 'bogus' (choose from 'up', "),
        (("services", "--bogus"), "questlog: error: unrecognized arguments: --bogus"),
        (("events", "replay"), "questlog events replay: error: the following arguments are required: --player"),
        (("events", "replay", "--player", "p", "--from-version", "x"), "questlog events replay: error: argument"),
        (("token", "--player", "p", "--ttl", "soon"), "questlog token: error: argument --ttl: invalid int value"),
        (("deadletters", "show", "x"), "questlog deadletters show: error: argument SEQ: invalid int value: 'x'"),
        (("bench", "players", "--saturate", "--find-capacity"), "questlog bench: error: argument --find-capacity"),
        (("admin",), "questlog admin: error: the following arguments are required"),
        # refused by the command itself, before it connects anywhere
        (("token", "--player", "no spaces"), "questlog: a player id is 1-64 letters"),
        (("state", "--player", "no spaces"), "questlog: a player id is 1-64 letters"),
        (("run", "nope"), "questlog: no service 'nope'; choose from commands, "),
        (("deadletters", "redrive"), "questlog: redrive needs the sequences of the dead letters, or --all"),
        (("deadletters", "show", "0"), "questlog: a dead letter's sequence is a positive number"),
    ],
)
def test_a_usage_error_is_one_line_and_exit_2(cli: Cli, argv: tuple[str, ...], line: str) -> None:
    code, out, err = cli(*argv)
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith(line), err


def test_help_is_unchanged_and_exits_0(cli: Cli) -> None:
    code, out, err = cli("events", "replay", "--help")
    assert code == 0 and err == ""
    assert out.startswith("usage: questlog events replay [-h] --player PLAYER")
    assert "--from-version FROM_VERSION" in out and "--json" in out


def test_every_command_ends_in_a_handler_that_resolves() -> None:
    """Walk the parser tree: each leaf sets `run`, and the handlers named by module:function import."""
    found: dict[str, object] = {}

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            found[path] = parser.get_default("run")
        for action in subs:
            for name, child in action.choices.items():
                walk(child, f"{path} {name}".strip())

    walk(_parser(), "")
    assert set(found) == COMMANDS
    for path, handler in found.items():
        assert callable(handler), path
        if isinstance(handler, _Later):
            assert callable(handler.resolve()), (path, handler.target)


def test_the_table_dispatches_services(cli: Cli) -> None:
    code, out, err = cli("services")
    assert code == 0 and err == ""
    assert out.split()[0] == "commands" and "gateway" in out.split()


def test_the_installed_script_prints_one_line_too() -> None:
    proc = subprocess.run([QUESTLOG, "bench", "nope"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "questlog bench: error: argument scenario: invalid choice: 'nope' "
        "(choose from 'players', 'append', 'load', 'reconnect-storm', 'rebuild', 'chaos')"
    ]
