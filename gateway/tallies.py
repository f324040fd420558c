"""The gateway's own counters: plain ints bumped where things happen, read when `/metrics` is collected.

`gw.metrics.requests += 1` is one attribute store on the hot path; an SDK
instrument would do its bookkeeping on every request. One prometheus_client
Collector per registry reads every live gateway's tallies at collection time.
By default that is the process registry, where the OpenTelemetry Prometheus
exporter writes too (services/runtime/telemetry.py), so `/metrics` is one
exposition of one registry. Connections, recoveries and rate-limit refusals
are OpenTelemetry's (services/runtime/metrics.py).
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

# The attributes of GatewayTallies and their HELP, each exported as `questlog_gateway_<name>_total`
# (`sessions_total` as `questlog_gateway_sessions_total`).
COUNTERS = {
    "sessions_total": "WebSocket sessions the gateway accepted",
    "requests": "JSON-RPC calls over WebSocket and POST /rpc (each call of a batch, notifications too)",
    "errors": "JSON-RPC calls that ended in an error",
    "events_sent": "Events handed to client sessions as `event` notifications",
    "too_slow": "Sessions closed because the client read too slowly (its send queue was full)",
    "refused_connections": "WebSocket connections refused by the per-address cap",
}


class GatewayTallies:
    """One gateway's counters; `/metrics` reports them labelled with its `gateway` id."""

    __slots__ = (
        "__weakref__",
        "errors",
        "events_sent",
        "gateway_id",
        "refused_connections",
        "requests",
        "sessions_total",
        "too_slow",
    )

    def __init__(self, gateway_id: str, registry: CollectorRegistry = REGISTRY) -> None:
        self.gateway_id = gateway_id
        self.sessions_total = 0
        self.requests = 0
        self.errors = 0
        self.events_sent = 0
        self.too_slow = 0
        self.refused_connections = 0
        _collector(registry).tallies.add(self)

    def counts(self) -> dict[str, int]:
        return {name: int(getattr(self, name)) for name in COUNTERS}


class TalliesCollector(Collector):
    """Every live GatewayTallies of one registry, read at each collection (a gateway gone is dropped)."""

    def __init__(self) -> None:
        self.tallies: weakref.WeakSet[GatewayTallies] = weakref.WeakSet()

    def collect(self) -> Iterator[CounterMetricFamily]:
        by_name: dict[str, Counter[str]] = {name: Counter() for name in COUNTERS}
        for tally in list(self.tallies):
            for name, n in tally.counts().items():
                by_name[name][tally.gateway_id] += n  # two gateways of one id: one sample, summed
        for name, help_text in COUNTERS.items():
            family = CounterMetricFamily(f"questlog_gateway_{name}", help_text, labels=["gateway"])
            for gateway_id, n in sorted(by_name[name].items()):
                family.add_metric([gateway_id], n)
            yield family

    def describe(self) -> Iterator[CounterMetricFamily]:
        # the names alone, so registering checks them for clashes without a collection
        for name, help_text in COUNTERS.items():
            yield CounterMetricFamily(f"questlog_gateway_{name}", help_text, labels=["gateway"])


_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, TalliesCollector] = weakref.WeakKeyDictionary()


def _collector(registry: CollectorRegistry) -> TalliesCollector:
    """The registry's one collector: a second would export every family twice."""
    found = _BY_REGISTRY.get(registry)
    if found is None:
        found = _BY_REGISTRY[registry] = TalliesCollector()
        registry.register(found)
    return found
