"""questlog's metric instruments, created from one OpenTelemetry Meter.

One small typed object instead of module-level instruments, so a test can
build it on its own MeterProvider and read exactly its own figures. There is
one per MeterProvider (`for_provider`, `from_global`), shared by every
component of the process.

Counters bumped on a hot path (events appended, commands, consumer messages,
the gateway's connections, recoveries and refusals) are plain in-process
tallies that observable counters read at collection time: a dict increment
instead of the SDK's per-call work. Histograms stay synchronous.

Names follow OTel conventions (dots, unit separate); the Prometheus exporter
turns `questlog.commands` into `questlog_commands_total`,
`questlog.command.duration` (unit s) into `questlog_command_duration_seconds`.
"""

from __future__ import annotations

import bisect
import weakref
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator

from opentelemetry import metrics as otel_metrics
from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation

METER_NAME = "questlog"

# Seconds; commands and appends are expected in the low milliseconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


# One QuestlogMetrics per MeterProvider: an observable counter keeps only the
# callbacks of its first registration, so the tallies behind it must be shared.
_BY_PROVIDER: weakref.WeakKeyDictionary[MeterProvider, QuestlogMetrics] = weakref.WeakKeyDictionary()
_global: QuestlogMetrics | None = None  # mirrors OTel's own global provider: see `from_global`


class CountsByAttributes:
    """Running totals by attribute values; an observable counter reports them."""

    def __init__(self, *keys: str) -> None:
        self._keys = keys
        self.counts: Counter[tuple[str, ...]] = Counter()

    def observe(self, _options: CallbackOptions) -> Iterator[Observation]:
        for values, n in list(self.counts.items()):
            yield Observation(n, dict(zip(self._keys, values, strict=True)))


class LatencyTally:
    """Append latency by outcome, as cumulative bucket counts (`le`), a count and a sum.

    The SDK histogram's `record` weighs on every append; this costs a bisect
    and three dict increments. Prometheus reads the
    buckets as any histogram's: `histogram_quantile(0.95, sum by (le)
    (rate(questlog_append_duration_buckets_total[5m])))`.
    """

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self._les = [*(repr(b) for b in bounds), "+Inf"]
        self.buckets: Counter[tuple[str, int]] = Counter()  # (outcome, bucket index), not cumulative
        self.count: Counter[str] = Counter()
        self.seconds: defaultdict[str, float] = defaultdict(float)

    def add(self, outcome: str, seconds: float) -> None:
        self.buckets[outcome, bisect.bisect_left(self._bounds, seconds)] += 1
        self.count[outcome] += 1
        self.seconds[outcome] += seconds

    def observe_buckets(self, _options: CallbackOptions) -> Iterator[Observation]:
        for outcome in list(self.count):
            running = 0
            for i, le in enumerate(self._les):
                running += self.buckets.get((outcome, i), 0)
                yield Observation(running, {"outcome": outcome, "le": le})

    def observe_count(self, _options: CallbackOptions) -> Iterator[Observation]:
        for outcome, n in list(self.count.items()):
            yield Observation(n, {"outcome": outcome})

    def observe_seconds(self, _options: CallbackOptions) -> Iterator[Observation]:
        for outcome, total in list(self.seconds.items()):
            yield Observation(total, {"outcome": outcome})


def _observed(meter: Meter, name: str, tally: CountsByAttributes, unit: str, description: str) -> None:
    meter.create_observable_counter(name, callbacks=[tally.observe], unit=unit, description=description)


class QuestlogMetrics:
    """Every questlog instrument, with one method per thing that happened.

    Build it with `for_provider` (or `from_global`), never twice on one provider.
    """

    def __init__(self, meter: Meter) -> None:
        self.commands = CountsByAttributes("method", "outcome")
        _observed(meter, "questlog.commands", self.commands, "{command}", "Commands handled, by method and outcome")
        self.command_duration = meter.create_histogram(
            "questlog.command.duration",
            unit="s",
            description="Time to handle a command, by method and outcome",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS,
        )
        self.events_appended = CountsByAttributes("type")
        _observed(
            meter, "questlog.events.appended", self.events_appended, "{event}", "Events stored in the log, by type"
        )
        self.appends = LatencyTally(LATENCY_BUCKETS)
        meter.create_observable_counter(
            "questlog.appends",
            callbacks=[self.appends.observe_count],
            unit="{append}",
            description="Appends (a single event or an atomic batch), by outcome (ok, conflict, duplicate, failed)",
        )
        meter.create_observable_counter(
            "questlog.append.time",
            callbacks=[self.appends.observe_seconds],
            unit="s",
            description="Seconds spent in appends, by outcome (divide by questlog_appends_total for the mean)",
        )
        meter.create_observable_counter(
            "questlog.append.duration.buckets",
            callbacks=[self.appends.observe_buckets],
            unit="{append}",
            description="Appends that took at most `le` seconds, by outcome: the buckets of a latency histogram",
        )
        self.consumer_messages = CountsByAttributes("consumer", "outcome")
        _observed(
            meter,
            "questlog.consumer.messages",
            self.consumer_messages,
            "{message}",
            "Messages a durable consumer took, by outcome (handled, failed, dead_lettered)",
        )
        self.redelivered = CountsByAttributes("consumer")
        _observed(
            meter,
            "questlog.consumer.redelivered",
            self.redelivered,
            "{message}",
            "Messages a durable consumer was handed again (a crash, a timeout or a failure before)",
        )
        # A synchronous gauge set from JetStream's num_pending (consumer info, or
        # the metadata of the last message fetched): OTel keeps the last value per
        # consumer, so no callback has to reach into a running consumer.
        self.consumer_lag = meter.create_gauge(
            "questlog.consumer.lag",
            unit="{message}",
            description="Messages in the stream not yet delivered to the durable consumer (num_pending)",
        )
        # The gateway's are tallies too: a reconnect storm bumps three per hello.
        self.connections = CountsByAttributes()
        meter.create_observable_up_down_counter(
            "questlog.gateway.connections",
            callbacks=[self.connections.observe],
            unit="{connection}",
            description="Open WebSocket connections",
        )
        self.recoveries = CountsByAttributes("recovered")
        _observed(
            meter,
            "questlog.gateway.recoveries",
            self.recoveries,
            "{session}",
            "session.hello calls with resume, by whether the client's position was recovered",
        )
        self.events_replayed = CountsByAttributes()
        _observed(
            meter,
            "questlog.gateway.events_replayed",
            self.events_replayed,
            "{event}",
            "Events sent to clients to recover what they missed",
        )
        self.stuck = CountsByAttributes("moved")
        _observed(
            meter,
            "questlog.sweep.stuck",
            self.stuck,
            "{player}",
            "Queues the stuck-queue sweep found overdue, by whether catching up moved them",
        )
        self.rate_limited = CountsByAttributes("scope")
        _observed(
            meter, "questlog.gateway.rate_limited", self.rate_limited, "{request}", "Requests refused by a rate limit"
        )

    @classmethod
    def for_provider(cls, provider: MeterProvider) -> QuestlogMetrics:
        """The one set of instruments on a private `provider` (for the global one: `from_global`)."""
        found = _BY_PROVIDER.get(provider)
        if found is None:
            found = _BY_PROVIDER[provider] = cls(provider.get_meter(METER_NAME))
        return found

    @classmethod
    def from_global(cls) -> QuestlogMetrics:
        """The process's instruments, on the global MeterProvider.

        Built once, on the API's meter: before `setup_telemetry` installs the
        SDK that meter is a proxy, and OTel moves its instruments, callbacks
        included, onto the real provider when it is installed. So a component
        built before telemetry counts into the same tallies as one built after.
        """
        global _global
        if _global is None:
            _global = cls(otel_metrics.get_meter(METER_NAME))
        return _global

    # -- commands service ------------------------------------------------------

    def command_handled(self, method: str, outcome: str, seconds: float) -> None:
        """`outcome`: "ok" or the error's name (e.g. "conflict", "rule_violated", "internal")."""
        self.commands.counts[method, outcome] += 1
        self.command_duration.record(seconds, {"method": method, "outcome": outcome})

    # -- event store -----------------------------------------------------------

    def append_finished(self, event_types: Iterable[str], outcome: str, seconds: float) -> None:
        """One append attempt; the events count by type only when they were stored."""
        self.appends.add(outcome, seconds)
        if outcome == "ok":
            counts = self.events_appended.counts
            for event_type in event_types:
                counts[(event_type,)] += 1

    # -- consumers -------------------------------------------------------------

    def message_taken(self, consumer: str, outcome: str) -> None:
        self.consumer_messages.counts[consumer, outcome] += 1

    def message_redelivered(self, consumer: str) -> None:
        self.redelivered.counts[(consumer,)] += 1

    def lag(self, consumer: str, num_pending: int) -> None:
        self.consumer_lag.set(num_pending, {"consumer": consumer})

    def stuck_found(self, moved: bool) -> None:
        self.stuck.counts[("true" if moved else "false",)] += 1

    # -- gateway ---------------------------------------------------------------

    def connection_opened(self) -> None:
        self.connections.counts[()] += 1

    def connection_closed(self) -> None:
        self.connections.counts[()] -= 1

    def recovery(self, recovered: bool, replayed: int) -> None:
        self.recoveries.counts[("true" if recovered else "false",)] += 1
        if replayed:
            self.events_replayed.counts[()] += replayed

    def refused_by_admission(self) -> None:
        self.rate_limited.counts[("admission",)] += 1

    def refused_by_rate_limit(self, scope: str) -> None:
        """`scope`: what the limit counts, e.g. "method", "connection"."""
        self.rate_limited.counts[(scope,)] += 1
