"""Which event types exist, at which schema version, and how old versions are upcast."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .errors import UnknownEventType, UnsupportedSchema
from .schema import PAYLOADS, Payload

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class EventRegistry:
    """Maps a type name to its payload class, and (type, old schema) to an upcaster.

    An upcaster turns the JSON object of schema N into the object of schema N+1;
    reading an event of schema N applies every step up to the class's `SCHEMA`.
    """

    def __init__(self, payloads: Iterable[type[Payload]] = PAYLOADS) -> None:
        self._types: dict[str, type[Payload]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        for cls in payloads:
            self.register(cls)

    def register(self, cls: type[Payload]) -> None:
        if cls.TYPE in self._types and self._types[cls.TYPE] is not cls:
            raise ValueError(f"event type {cls.TYPE!r} registered twice")
        self._types[cls.TYPE] = cls

    def upcaster(self, event_type: str, from_schema: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator: register the step from `from_schema` to `from_schema + 1`."""

        def add(fn: Upcaster) -> Upcaster:
            self._upcasters[(event_type, from_schema)] = fn
            return fn

        return add

    def payload_class(self, event_type: str, seq: int | None = None) -> type[Payload]:
        try:
            return self._types[event_type]
        except KeyError:
            raise UnknownEventType(event_type, seq) from None

    def upcast(self, event_type: str, schema: int, data: dict[str, Any]) -> dict[str, Any]:
        cls = self.payload_class(event_type)
        if schema > cls.SCHEMA:
            raise UnsupportedSchema(event_type, schema, cls.SCHEMA)
        for version in range(schema, cls.SCHEMA):
            step = self._upcasters.get((event_type, version))
            if step is None:
                raise UnsupportedSchema(event_type, schema, cls.SCHEMA)
            data = step(data)
        return data

    @property
    def types(self) -> list[str]:
        return sorted(self._types)


def default_registry() -> EventRegistry:
    """The registry of this code's event types with every upcaster it ships."""
    return EventRegistry()
