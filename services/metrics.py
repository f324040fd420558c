"""questlog's metric instruments, created from one OpenTelemetry Meter.

One small typed object instead of module-level instruments, so a test can
build it on its own MeterProvider and read exactly its own figures. OTel
keeps the instruments: building `QuestlogMetrics` twice on one Meter returns
the same instruments (same name, same kind), so every component may build its
own from the global provider without double counting.

Names follow OTel conventions (dots, unit separate); the Prometheus exporter
turns `questlog.commands` into `questlog_commands_total`,
`questlog.command.duration` (unit s) into `questlog_command_duration_seconds`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from opentelemetry import metrics as otel_metrics
from opentelemetry.metrics import Meter

METER_NAME = "questlog"

# Seconds; commands and appends are expected in the low milliseconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class QuestlogMetrics:
    """Every questlog instrument, with one method per thing that happened."""

    def __init__(self, meter: Meter) -> None:
        self.commands = meter.create_counter(
            "questlog.commands", unit="{command}", description="Commands handled, by method and outcome"
        )
        self.command_duration = meter.create_histogram(
            "questlog.command.duration",
            unit="s",
            description="Time to handle a command, by method and outcome",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS,
        )
        self.events_appended = meter.create_counter(
            "questlog.events.appended", unit="{event}", description="Events stored in the log, by type"
        )
        self.append_duration = meter.create_histogram(
            "questlog.append.duration",
            unit="s",
            description="Time of one append (a single event or an atomic batch), by outcome; "
            "its _count is the number of appends (ok, conflict, duplicate, failed)",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS,
        )
        self.consumer_messages = meter.create_counter(
            "questlog.consumer.messages",
            unit="{message}",
            description="Messages a durable consumer took, by outcome (handled, failed, dead_lettered)",
        )
        # A synchronous gauge set from JetStream's num_pending (consumer info, or
        # the metadata of the last message fetched): OTel keeps the last value per
        # consumer, so no callback has to reach into a running consumer.
        self.consumer_lag = meter.create_gauge(
            "questlog.consumer.lag",
            unit="{message}",
            description="Messages in the stream not yet delivered to the durable consumer (num_pending)",
        )
        self.connections = meter.create_up_down_counter(
            "questlog.gateway.connections", unit="{connection}", description="Open WebSocket connections"
        )
        self.recoveries = meter.create_counter(
            "questlog.gateway.recoveries",
            unit="{session}",
            description="session.hello calls with resume, by whether the client's position was recovered",
        )
        self.events_replayed = meter.create_counter(
            "questlog.gateway.events_replayed",
            unit="{event}",
            description="Events sent to clients to recover what they missed",
        )
        self.rate_limited = meter.create_counter(
            "questlog.gateway.rate_limited", unit="{request}", description="Requests refused by a rate limit"
        )

    @classmethod
    def from_global(cls) -> QuestlogMetrics:
        """Instruments on the process's MeterProvider (a no-op until `setup_telemetry` installs one)."""
        return cls(otel_metrics.get_meter(METER_NAME))

    # -- commands service ------------------------------------------------------

    def command_handled(self, method: str, outcome: str, seconds: float) -> None:
        """`outcome`: "ok" or the error's name (e.g. "conflict", "rule_violated", "internal")."""
        attrs = {"method": method, "outcome": outcome}
        self.commands.add(1, attrs)
        self.command_duration.record(seconds, attrs)

    # -- event store -----------------------------------------------------------

    def append_finished(self, event_types: Iterable[str], outcome: str, seconds: float) -> None:
        """One append attempt; the events count by type only when they were stored."""
        # Two recordings per append at most: the SDK's cost per call rivals the
        # publish itself (docs/benchmarks.md), so the appends count is the
        # histogram's _count, and one batch is one add per distinct type.
        self.append_duration.record(seconds, {"outcome": outcome})
        if outcome == "ok":
            types = list(event_types)
            if len(types) == 1:
                self.events_appended.add(1, {"type": types[0]})
            else:
                for event_type, n in Counter(types).items():
                    self.events_appended.add(n, {"type": event_type})

    # -- consumers -------------------------------------------------------------

    def message_taken(self, consumer: str, outcome: str) -> None:
        self.consumer_messages.add(1, {"consumer": consumer, "outcome": outcome})

    def lag(self, consumer: str, num_pending: int) -> None:
        self.consumer_lag.set(num_pending, {"consumer": consumer})

    # -- gateway ---------------------------------------------------------------

    def connection_opened(self) -> None:
        self.connections.add(1)

    def connection_closed(self) -> None:
        self.connections.add(-1)

    def recovery(self, recovered: bool, replayed: int) -> None:
        self.recoveries.add(1, {"recovered": "true" if recovered else "false"})
        if replayed:
            self.events_replayed.add(replayed)

    def refused_by_rate_limit(self, scope: str) -> None:
        """`scope`: what the limit counts, e.g. "method", "connection"."""
        self.rate_limited.add(1, {"scope": scope})
