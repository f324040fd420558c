"""Why a command or the catalog was refused. Each type maps to one JSON-RPC error code."""

from __future__ import annotations

from typing import Any


class RulesError(Exception):
    """Base of every error the pure game core raises."""


class CatalogError(RulesError):
    """The catalog file is malformed or refers to something that does not exist."""


class RuleViolation(RulesError):
    """A game rule forbids the command (-32010): `rule` is a stable id, `detail` reads well."""

    def __init__(self, rule: str, detail: str) -> None:
        self.rule, self.detail = rule, detail
        super().__init__(f"{rule}: {detail}")

    @property
    def data(self) -> dict[str, Any]:
        return {"rule": self.rule, "detail": self.detail}


class NotFound(RulesError):
    """The command names a task (or player) that does not exist (-32004)."""

    def __init__(self, what: str, id: str) -> None:
        self.what, self.id = what, id
        super().__init__(f"{what} {id!r} not found")

    @property
    def data(self) -> dict[str, Any]:
        return {"what": self.what, "id": self.id}


class InvalidCommand(RulesError):
    """A parameter is malformed regardless of game state (-32602)."""

    def __init__(self, field: str, reason: str) -> None:
        self.field, self.reason = field, reason
        super().__init__(f"{field}: {reason}")

    @property
    def data(self) -> dict[str, Any]:
        return {"field": self.field, "reason": self.reason}


class VersionConflict(RulesError):
    """`expected_version` differs from the player's version (-32009)."""

    def __init__(self, current_version: int) -> None:
        self.current_version = current_version
        super().__init__(f"the player is at version {current_version}")

    @property
    def data(self) -> dict[str, Any]:
        return {"current_version": self.current_version}
