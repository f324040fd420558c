"""Metrics and traces against the real nats-server: what `/metrics` shows after real work.

Counting tests build private providers (their own Prometheus registry) and
hand `telemetry.metrics` to the store and the consumer, so figures from other
tests sharing the servers never mix in.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from questlog.events.errors import ConcurrencyConflict
from questlog.events.schema import NewEvent, QueuePaused, QueueResumed
from questlog.events.store import EventStore, Position
from questlog.events.subjects import player_events
from questlog.gateway.tallies import COUNTERS, GatewayTallies
from questlog.services.runtime.consumer import ConsumerSpec, run_consumer
from questlog.services.runtime.embedded import free_port
from questlog.services.runtime.settings import Settings
from questlog.services.runtime.telemetry import Telemetry, serve_metrics, setup_telemetry

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def private() -> Telemetry:
    return setup_telemetry("questlog-test", environ={}, registry=CollectorRegistry(), install_global=False)


def sample(telemetry: Telemetry, name: str, **labels: str) -> float | None:
    """The value of one sample in the Prometheus text, as a scraper would read it."""
    for family in text_string_to_metric_families(telemetry.prometheus_text().decode()):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


async def test_appends_show_in_prometheus_text_by_type_and_outcome(
    nc: NATS, settings: Settings, player_id: str
) -> None:
    t = private()
    store = EventStore(nc, settings.streams.events, metrics=t.metrics)
    first = await store.append(
        player_id, [NewEvent(QueuePaused(reason="a"), NOW)], expected=Position(), command_id="c1"
    )
    at = Position(first[-1].version, first[-1].seq)
    await store.append(
        player_id,
        [NewEvent(QueueResumed(), NOW), NewEvent(QueuePaused(reason="b"), NOW)],
        expected=at,
        command_id="c2",
    )
    with pytest.raises(ConcurrencyConflict):
        await store.append(player_id, [NewEvent(QueueResumed(), NOW)], expected=at, command_id="c3")

    assert sample(t, "questlog_events_appended_total", type="queue.paused") == 2
    assert sample(t, "questlog_events_appended_total", type="queue.resumed") == 1
    assert sample(t, "questlog_appends_total", outcome="ok") == 2
    assert sample(t, "questlog_appends_total", outcome="conflict") == 1
    assert (sample(t, "questlog_append_time_seconds_total", outcome="ok") or 0) > 0
    # the buckets are cumulative and end at the count, as a histogram's do
    assert sample(t, "questlog_append_duration_buckets_total", outcome="ok", le="+Inf") == 2
    assert sample(t, "questlog_append_duration_buckets_total", outcome="conflict", le="+Inf") == 1
    ok_buckets = [
        s.value
        for family in text_string_to_metric_families(t.prometheus_text().decode())
        for s in family.samples
        if s.name == "questlog_append_duration_buckets_total" and s.labels["outcome"] == "ok"
    ]
    assert len(ok_buckets) == 14 and ok_buckets == sorted(ok_buckets)


def test_append_latency_buckets_count_each_append_once_at_its_bound() -> None:
    t = private()
    for seconds in (0.0004, 0.001, 0.003, 0.003, 99.0):
        t.metrics.append_finished(["queue.paused"], "ok", seconds)
    assert sample(t, "questlog_append_duration_buckets_total", outcome="ok", le="0.001") == 2  # le: at most
    assert sample(t, "questlog_append_duration_buckets_total", outcome="ok", le="0.0025") == 2
    assert sample(t, "questlog_append_duration_buckets_total", outcome="ok", le="0.005") == 4
    assert sample(t, "questlog_append_duration_buckets_total", outcome="ok", le="10.0") == 4
    assert sample(t, "questlog_append_duration_buckets_total", outcome="ok", le="+Inf") == 5
    assert sample(t, "questlog_append_time_seconds_total", outcome="ok") == pytest.approx(99.0074)


async def test_consumer_counts_outcomes_and_reports_lag(nc: NATS, settings: Settings, player_id: str) -> None:
    t = private()
    store = EventStore(nc, settings.streams.events, metrics=t.metrics)
    pos = Position()
    for i in range(5):
        (rec,) = await store.append(
            player_id, [NewEvent(QueuePaused(reason=str(i)), NOW)], expected=pos, command_id=f"c{i}"
        )
        pos = Position(rec.version, rec.seq)
    spec = ConsumerSpec(
        durable=f"test-metrics-{uuid.uuid4().hex[:8]}",
        stream=settings.streams.events,
        filter_subjects=[player_events(player_id)],
        backoff_s=(0.01,),
        max_deliver=2,
        batch=2,
    )
    first_taken, release, all_done = asyncio.Event(), asyncio.Event(), asyncio.Event()
    seen: list[int] = []

    async def handler(msg: Msg) -> None:
        n = msg.metadata.sequence.stream
        if n == pos.seq:
            raise RuntimeError("the last event is poison")  # fails twice: failed, then dead-lettered
        first_taken.set()
        await release.wait()
        seen.append(n)
        if len(seen) == 4:
            all_done.set()

    stop = asyncio.Event()
    task = asyncio.create_task(run_consumer(nc, spec, handler, stop, wait_s=0.2, metrics=t.metrics))
    await asyncio.wait_for(first_taken.wait(), 10)
    # The first fetch took 2 of 5; JetStream's num_pending says 3 are still undelivered.
    assert sample(t, "questlog_consumer_lag", consumer=spec.durable) == 3
    release.set()
    await asyncio.wait_for(all_done.wait(), 10)

    async def dead_lettered() -> None:
        while sample(t, "questlog_consumer_messages_total", consumer=spec.durable, outcome="dead_lettered") != 1:
            await asyncio.sleep(0.02)  # polling the exposition: the counter has no event to await

    await asyncio.wait_for(dead_lettered(), 10)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert sample(t, "questlog_consumer_messages_total", consumer=spec.durable, outcome="handled") == 4
    assert sample(t, "questlog_consumer_messages_total", consumer=spec.durable, outcome="failed") == 1
    assert sample(t, "questlog_consumer_lag", consumer=spec.durable) == 0


def test_gateway_figures_have_their_names() -> None:
    t = private()
    t.metrics.command_handled("queue.enqueue", "ok", 0.004)
    t.metrics.command_handled("queue.enqueue", "rule_violated", 0.002)
    t.metrics.connection_opened()
    t.metrics.connection_opened()
    t.metrics.connection_closed()
    t.metrics.recovery(True, 7)
    t.metrics.recovery(False, 0)
    t.metrics.refused_by_rate_limit("method")
    assert sample(t, "questlog_commands_total", method="queue.enqueue", outcome="ok") == 1
    assert sample(t, "questlog_command_duration_seconds_count", method="queue.enqueue", outcome="rule_violated") == 1
    assert sample(t, "questlog_gateway_connections") == 1
    assert sample(t, "questlog_gateway_recoveries_total", recovered="true") == 1
    assert sample(t, "questlog_gateway_recoveries_total", recovered="false") == 1
    assert sample(t, "questlog_gateway_events_replayed_total") == 7
    assert sample(t, "questlog_gateway_rate_limited_total", scope="method") == 1


def test_gateway_tallies_are_counters_on_the_exporters_registry() -> None:
    """The gateway's own counters, read at collection time on the registry the OpenTelemetry
    exporter writes to: one exposition, `_total` names, HELP text, a `gateway` label."""
    t = private()
    t.metrics.connection_opened()
    tallies = GatewayTallies("gw-test", t.registry)
    tallies.requests += 3
    tallies.too_slow += 1
    assert sample(t, "questlog_gateway_requests_total", gateway="gw-test") == 3
    assert sample(t, "questlog_gateway_too_slow_total", gateway="gw-test") == 1
    tallies.requests += 1
    assert sample(t, "questlog_gateway_requests_total", gateway="gw-test") == 4, "read when collected"
    assert sample(t, "questlog_gateway_connections") == 1, "beside the OpenTelemetry instruments"
    text = t.prometheus_text().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in COUNTERS:
        family = families[f"questlog_gateway_{name.removesuffix('_total')}"]
        assert family.type == "counter" and family.documentation, name
        assert f"questlog_gateway_{name.removesuffix('_total')}_total{{" in text
    kinds = [line for line in text.splitlines() if line.startswith("# TYPE")]
    assert len(kinds) == len(set(kinds)), "no metric family twice"


async def test_metrics_port_serves_the_exposition() -> None:
    t = private()
    t.metrics.connection_opened()
    port = free_port()
    runner = await serve_metrics("127.0.0.1", port, t.registry)
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain; version=")
            body = await resp.text()
    finally:
        await runner.cleanup()
    assert "questlog_gateway_connections" in body
    assert 'service_name="questlog-test"' in body  # target_info names the service


def test_exporters_follow_the_standard_variables() -> None:
    def kinds(env: dict[str, str]) -> tuple[str, ...]:
        t = setup_telemetry("x", environ=env, registry=CollectorRegistry(), install_global=False)
        t.shutdown()
        return t.exporters

    assert kinds({}) == ("prometheus",)
    assert kinds({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}) == ("prometheus", "traces:otlp", "metrics:otlp")
    assert kinds({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_METRICS_EXPORTER": "none"}) == (
        "prometheus",
        "traces:otlp",
    )
    assert kinds({"OTEL_TRACES_EXPORTER": "otlp"}) == ("prometheus", "traces:otlp")
    assert kinds({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://h:1/x"}) == (
        "prometheus",
    )


def test_with_nothing_to_export_spans_are_not_recorded_but_their_context_travels() -> None:
    def tracer(env: dict[str, str]) -> trace.Tracer:
        t = setup_telemetry("x", environ=env, registry=CollectorRegistry(), install_global=False)
        return t.tracer_provider.get_tracer("test")

    with tracer({}).start_as_current_span("root") as root:
        assert not root.is_recording() and root.get_span_context().is_valid
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        assert int(carrier["traceparent"][-2:], 16) & 1 == 0  # the ids go on, unsampled
    sampled_parent = propagate.extract({"traceparent": f"00-{'ab' * 16}-{'cd' * 8}-01"})
    with tracer({}).start_as_current_span("child", context=sampled_parent) as child:
        assert child.is_recording(), "under a sampled parent (an upstream that exports) it records"
    with tracer({"OTEL_TRACES_SAMPLER": "parentbased_always_on"}).start_as_current_span("asked") as asked:
        assert asked.is_recording()


@pytest_asyncio.fixture
async def otlp_receiver() -> AsyncIterator[tuple[str, list[tuple[str, str, bytes]]]]:
    """A real HTTP server standing in for the collector: records each POST."""
    received: list[tuple[str, str, bytes]] = []

    async def record(request: web.Request) -> web.Response:
        received.append((request.path, request.content_type, await request.read()))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", received
    await runner.cleanup()


async def test_spans_are_exported_over_otlp_http(otlp_receiver) -> None:
    endpoint, received = otlp_receiver
    t = setup_telemetry(
        "questlog-otlp-test",
        environ={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_METRICS_EXPORTER": "none"},
        registry=CollectorRegistry(),
        install_global=False,
    )
    with t.tracer_provider.get_tracer("test").start_as_current_span("questlog.test.span"):
        pass
    # The exporter posts from its own thread with a blocking client: flush off the loop.
    assert await asyncio.to_thread(t.tracer_provider.force_flush, 10_000)
    await asyncio.to_thread(t.shutdown)
    (path, content_type, body) = received[0]
    assert path == "/v1/traces"
    assert content_type == "application/x-protobuf"
    assert b"questlog.test.span" in body and b"questlog-otlp-test" in body


async def test_append_carries_the_callers_trace_in_the_stored_headers(
    nc: NATS, settings: Settings, player_id: str, spans: InMemorySpanExporter
) -> None:
    store = EventStore(nc, settings.streams.events, metrics=private().metrics)
    with trace.get_tracer("test").start_as_current_span("request") as parent:
        (rec,) = await store.append(
            player_id, [NewEvent(QueuePaused(reason="t"), NOW)], expected=Position(), command_id="c1"
        )
    trace_id = format(parent.get_span_context().trace_id, "032x")
    stored = await nc.jetstream().get_msg(settings.streams.events, rec.seq, direct=True)
    assert stored.headers is not None
    _version, header_trace, header_span, _flags = stored.headers["traceparent"].split("-")
    assert header_trace == trace_id
    # the store adds no span of its own: what consumes the event continues the caller's span
    assert header_span == format(parent.get_span_context().span_id, "016x")


async def test_questlog_run_serves_metrics_of_real_work(tmp_path, stack) -> None:
    """`questlog run commands` with QUESTLOG_METRICS_PORT: appends show on its /metrics.

    On a NATS of its own, so the session's in-process commands service cannot
    answer in its place.
    """
    import os
    import signal
    import sys
    from pathlib import Path

    import nats

    from questlog.services.contract.command_client import Actor, CommandClient
    from questlog.services.runtime.embedded import nats_server

    server = await nats_server(free_port(), tmp_path / "nats").start()
    metrics_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUESTLOG_", "OTEL_"))}
    env.update(
        QUESTLOG_NATS_URL=server.url,
        QUESTLOG_REDIS_URL=stack.redis_url,
        QUESTLOG_METRICS_PORT=str(metrics_port),
        QUESTLOG_DATA_DIR=str(tmp_path / "data"),
        QUESTLOG_JWT_SECRET="test-secret-test-secret-test-secret",
    )
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "questlog"), "run", "commands", env=env, stderr=asyncio.subprocess.DEVNULL
    )
    nc = await nats.connect(server.url)
    try:
        client = CommandClient(nc, timeout=2.0)
        player = f"p-{uuid.uuid4().hex[:8]}"
        deadline = asyncio.get_running_loop().time() + 30
        while True:  # the service's readiness is only visible as an answer
            try:
                await client.call(
                    "queue.enqueue",
                    player,
                    {"activity": "harvesting", "target": "oak_log", "quantity": 1},
                    Actor(player),
                )
                break
            except Exception:
                assert proc.returncode is None, "questlog run commands exited"
                assert asyncio.get_running_loop().time() < deadline, "commands service never answered"
                await asyncio.sleep(0.1)
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{metrics_port}/metrics") as resp:
            body = await resp.text()
        families = {
            s.name: s
            for f in text_string_to_metric_families(body)
            for s in f.samples
            if s.labels.get("type") == "player.created"
        }
        assert families["questlog_events_appended_total"].value >= 1
        assert 'service_name="questlog-commands"' in body
    finally:
        await nc.close()
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        await server.stop()


async def test_a_consumer_handles_each_event_inside_the_trace_that_appended_it(
    nc: NATS, settings: Settings, player_id: str, spans: InMemorySpanExporter
) -> None:
    """So a service's own append (processor, reward) continues the command's trace."""
    t = private()
    store = EventStore(nc, settings.streams.events, metrics=t.metrics)
    with trace.get_tracer("test").start_as_current_span("request") as parent:
        await store.append(player_id, [NewEvent(QueuePaused(reason="t"), NOW)], expected=Position(), command_id="c1")
    seen: list[int] = []
    handled = asyncio.Event()

    async def handler(msg: Msg) -> None:
        seen.append(trace.get_current_span().get_span_context().trace_id)
        handled.set()

    spec = ConsumerSpec(
        durable=f"test-trace-{uuid.uuid4().hex[:8]}",
        stream=settings.streams.events,
        filter_subjects=[player_events(player_id)],
    )
    stop = asyncio.Event()
    task = asyncio.create_task(run_consumer(nc, spec, handler, stop, wait_s=0.2, metrics=t.metrics))
    await asyncio.wait_for(handled.wait(), 10)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert seen == [parent.get_span_context().trace_id]


async def test_commands_count_by_method_and_outcome_with_latency(tmp_path) -> None:
    from questlog.services.commands import serve_commands
    from questlog.services.contract.command_client import Actor, CommandClient
    from questlog.services.contract.protocol import RpcError
    from questlog.services.runtime.connections import connect

    from .stacks import commands_ready, private_stack

    t = private()
    async with private_stack(tmp_path) as (settings, nc, _env), connect(settings) as wiring:
        stop = asyncio.Event()
        task = asyncio.create_task(serve_commands(wiring, stop, metrics=t.metrics))
        await asyncio.wait_for(wiring.ready("commands").wait(), 10)
        await commands_ready(nc, timeout_s=10)
        client = CommandClient(nc)
        await client.call("queue.pause", "m-1", {}, Actor("m-1"))
        with pytest.raises(RpcError):
            await client.call("queue.cancel", "m-1", {"task_id": "t-none"}, Actor("m-1"))
        stop.set()
        await task
    assert sample(t, "questlog_commands_total", method="queue.pause", outcome="ok") == 1
    assert sample(t, "questlog_commands_total", method="queue.cancel", outcome="not_found") == 1
    assert sample(t, "questlog_command_duration_seconds_count", method="queue.pause", outcome="ok") == 1


def test_counts_made_before_telemetry_is_set_up_are_not_lost() -> None:
    """A component may take `from_global()` before `setup_telemetry`; one set of tallies serves both.

    Run in a fresh interpreter: the global provider can be installed once per process.
    """
    script = textwrap.dedent(
        """
        from questlog.services.runtime.metrics import QuestlogMetrics
        from questlog.services.runtime.telemetry import setup_telemetry
        early = QuestlogMetrics.from_global()
        early.message_taken("c", "handled")
        t = setup_telemetry("questlog-test", environ={})
        assert t.installed
        QuestlogMetrics.from_global().message_taken("c", "handled")
        t.metrics.message_taken("c", "handled")
        print(t.prometheus_text().decode())
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True).stdout
    families = {f.name: f for f in text_string_to_metric_families(out)}
    (sample,) = [s for s in families["questlog_consumer_messages"].samples if s.name.endswith("_total")]
    assert sample.value == 3, out
