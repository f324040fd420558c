"""Pure tests of the game core. `World` plays the store's role in memory: it records
events with dense versions exactly as the event store would, and folds them."""

from __future__ import annotations

from datetime import UTC, datetime

from questlog.events.schema import NewEvent, Recorded
from questlog.projections.player import evolve, initial_state
from questlog.projections.state import COMMAND_MEMORY, PlayerState
from questlog.services.rules.catalog import Rules, load_catalog
from questlog.services.rules.clock import FixedClock
from questlog.services.rules.commands import AdminCommand, Command
from questlog.services.rules.decide import Decision, decide
from questlog.services.rules.scheduling import catch_up

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
CATALOG = load_catalog()


def rules(time_scale: float = 1.0) -> Rules:
    return Rules(catalog=CATALOG, time_scale=time_scale)


class World:
    """One player's log and state, a fixed clock, and the rules."""

    def __init__(self, player_id: str = "p-1", time_scale: float = 1.0, at: datetime = T0) -> None:
        self.rules = rules(time_scale)
        self.clock = FixedClock(at)
        self.state: PlayerState = initial_state(player_id)
        self.log: list[Recorded] = []
        self._ids = 0
        self.memory = COMMAND_MEMORY  # command ids the fold remembers

    def record(self, events: list[NewEvent], command_id: str | None = None) -> None:
        for new in events:
            rec = Recorded(
                player_id=self.state.player_id,
                version=self.state.version + 1,
                occurred_at=new.occurred_at,
                event=new.event,
                command_id=command_id,
                seq=len(self.log) + 1,
            )
            self.log.append(rec)
            self.state = evolve(self.state, rec, self.memory)

    def send(self, command: Command, admin: str | None = None) -> Decision:
        """Decide `command`; an admin command is sent by `admin` ("ops" unless told)."""
        if isinstance(command, AdminCommand) and admin is None:
            admin = "ops"
        decision = decide(self.state, command, self.clock, self.rules, admin)
        self.record(decision.events, command.command_id)
        return decision

    def next_id(self) -> str:
        self._ids += 1
        return f"c-{self._ids}"

    def run(self, seconds: float | None = None, until: datetime | None = None) -> None:
        """Let the processor and reward service do everything due up to a time."""
        if seconds is not None:
            self.clock.advance(seconds)
        now = until or self.clock.now()
        while True:
            batches = catch_up(self.state, now, self.rules, limit=200)
            if not batches:
                return
            for batch in batches:
                self.record(batch, "engine:catch-up")

    def types(self, since: int = 0) -> list[str]:
        return [r.type for r in self.log[since:]]
