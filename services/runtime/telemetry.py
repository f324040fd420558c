"""OpenTelemetry for a questlog process, set up by one call: traces, metrics, `/metrics`.

Traces: a TracerProvider; the W3C `traceparent` the event store and the
command client inject into NATS headers is OTel's default propagator, so a
trace crosses services without configuration. Spans leave the process only
when the standard variables ask for it (OTLP over HTTP/protobuf).

Metrics: a MeterProvider with a Prometheus reader, read by `/metrics`
(`prometheus_text`), plus OTLP push when the variables ask for it.

Which exporters run is decided by the standard `OTEL_*` variables:

* `OTEL_TRACES_EXPORTER` / `OTEL_METRICS_EXPORTER`: a comma list of `otlp`,
  `console`, `none`. Unset means `otlp` if an OTLP endpoint is configured,
  else nothing (the spec's default is `otlp` always; exporting to a collector
  nobody runs would only fill the logs with connection errors).
* `OTEL_EXPORTER_OTLP_ENDPOINT` (base URL, `/v1/traces` and `/v1/metrics` are
  appended) or the per-signal `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` /
  `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` (used as they are).
* `OTEL_SERVICE_NAME` overrides the service name; `OTEL_RESOURCE_ATTRIBUTES`,
  `OTEL_TRACES_SAMPLER`, `OTEL_EXPORTER_OTLP_HEADERS` and the other SDK and
  exporter variables are read by the SDK itself, from the process environment.
  With no trace exporter and no `OTEL_TRACES_SAMPLER`, the sampler is
  `parentbased_always_off`: nothing is recorded that nothing would export.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping

from aiohttp import web
from opentelemetry import metrics as otel_metrics
from opentelemetry import trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from .metrics import QuestlogMetrics

log = logging.getLogger("questlog.telemetry")


class Telemetry:
    """What `setup_telemetry` built; `shutdown()` flushes whatever exports."""

    def __init__(
        self,
        tracer_provider: TracerProvider,
        meter_provider: MeterProvider,
        registry: CollectorRegistry,
        exporters: tuple[str, ...],
        installed: bool,
    ) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.registry = registry
        self.exporters = exporters
        self.installed = installed
        self.metrics = QuestlogMetrics.from_global() if installed else QuestlogMetrics.for_provider(meter_provider)

    def prometheus_text(self) -> bytes:
        return prometheus_text(self.registry)

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def setup_telemetry(
    service_name: str,
    *,
    environ: Mapping[str, str] | None = None,
    registry: CollectorRegistry | None = None,
    install_global: bool = True,
) -> Telemetry:
    """Build the providers for `service_name` and (by default) make them the process's own.

    `install_global=False` keeps them private (tests; several in one process):
    pass `telemetry.metrics` and `telemetry.tracer_provider` where needed, and
    give a private `registry`. The global install happens once per process; a
    second call gets private providers and a warning.
    """
    env = os.environ if environ is None else environ
    name = env.get("OTEL_SERVICE_NAME") or service_name
    resource = Resource.create({"service.name": name, "service.namespace": "questlog"})
    installed = install_global and not _sdk_installed()
    if install_global and not installed:
        log.warning("telemetry was already set up in this process; %s gets private providers", name)
    registry = registry if registry is not None else (REGISTRY if installed else CollectorRegistry(auto_describe=True))
    exporters: list[str] = ["prometheus"]

    span_exporters = [(kind, e) for kind in _exporters(env, "TRACES") if (e := _span_exporter(kind, env)) is not None]
    # Recording spans nobody exports is a large share of a busy service's CPU
    # (docs/operations.md): with no exporter and no sampler asked for, spans are recorded
    # only under a sampled parent (the trace context still travels in every header).
    quiet = not span_exporters and "OTEL_TRACES_SAMPLER" not in env
    tracer_provider = TracerProvider(resource=resource, sampler=ParentBased(ALWAYS_OFF) if quiet else None)
    for kind, exporter in span_exporters:
        tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
        exporters.append(f"traces:{kind}")

    readers: list[MetricReader] = [PrometheusMetricReader(registry=registry)]
    for kind in _exporters(env, "METRICS"):
        reader = _metric_reader(kind, env)
        if reader is not None:
            readers.append(reader)
            exporters.append(f"metrics:{kind}")
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)

    if installed:
        trace.set_tracer_provider(tracer_provider)
        otel_metrics.set_meter_provider(meter_provider)
    return Telemetry(tracer_provider, meter_provider, registry, tuple(exporters), installed)


def _sdk_installed() -> bool:
    return isinstance(trace.get_tracer_provider(), TracerProvider) or isinstance(
        otel_metrics.get_meter_provider(), MeterProvider
    )


def _otlp_endpoint(env: Mapping[str, str], signal: str) -> str | None:
    specific = env.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
    if specific:
        return specific
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if base:
        return base.rstrip("/") + f"/v1/{signal.lower()}"
    return None


def _exporters(env: Mapping[str, str], signal: str) -> list[str]:
    raw = env.get(f"OTEL_{signal}_EXPORTER")
    if raw is None or not raw.strip():
        return ["otlp"] if _otlp_endpoint(env, signal) else []
    kinds = [k.strip().lower() for k in raw.split(",") if k.strip()]
    return [] if "none" in kinds else kinds


def _check_protocol(env: Mapping[str, str], signal: str) -> None:
    protocol = env.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol and protocol != "http/protobuf":
        log.warning("OTLP protocol %r is not installed; exporting %s over http/protobuf", protocol, signal.lower())


def _span_exporter(kind: str, env: Mapping[str, str]) -> SpanExporter | None:
    if kind == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        _check_protocol(env, "TRACES")
        return OTLPSpanExporter(endpoint=_otlp_endpoint(env, "TRACES"))
    if kind == "console":
        return ConsoleSpanExporter()
    log.warning("unknown OTEL_TRACES_EXPORTER %r ignored (otlp, console, none)", kind)
    return None


def _metric_reader(kind: str, env: Mapping[str, str]) -> MetricReader | None:
    if kind == "otlp":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        _check_protocol(env, "METRICS")
        return PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=_otlp_endpoint(env, "METRICS")))
    if kind == "console":
        return PeriodicExportingMetricReader(ConsoleMetricExporter())
    if kind == "prometheus":
        return None  # always on: /metrics
    log.warning("unknown OTEL_METRICS_EXPORTER %r ignored (otlp, prometheus, console, none)", kind)
    return None


# -- /metrics --------------------------------------------------------------------


def prometheus_text(registry: CollectorRegistry = REGISTRY) -> bytes:
    """The Prometheus text exposition of `registry` (default: the one `setup_telemetry` installed)."""
    return generate_latest(registry)


async def serve_metrics(
    host: str, port: int, registry: CollectorRegistry = REGISTRY, *, ready: Callable[[], bool] | None = None
) -> web.AppRunner:
    """`/metrics`, `/healthz` and `/readyz` on their own port, for services without an HTTP server.

    `/readyz` answers 200 once `ready()` is true (the service serves), 503 before.
    """

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=prometheus_text(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def readyz(request: web.Request) -> web.Response:
        is_ready = ready is None or ready()
        return web.json_response({"ready": is_ready}, status=200 if is_ready else 503)

    app = web.Application()
    app.router.add_get("/metrics", handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
