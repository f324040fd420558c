"""One trace from a WebSocket request to the events reaching the client (OpenTelemetry)."""

from __future__ import annotations

import asyncio

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from questlog.gateway.client import QuestlogClient

from .test_end_to_end import collect_until, completed


async def test_one_trace_runs_from_the_request_through_every_service_to_the_client(
    spans: InMemorySpanExporter, gateway, token, player_id
) -> None:
    client = QuestlogClient(gateway.ws_url, token(player_id), reconnect=False)
    await client.connect()
    spans.clear()
    await client.call("queue.enqueue", {"activity": "harvesting", "target": "stone", "quantity": 2})
    # the reward service reacts on its own: its event may come after task.completed
    await collect_until(client, lambda es: completed(es) and any(e["type"] == "reward.granted" for e in es))
    await client.close()
    (request,) = [s for s in spans.get_finished_spans() if s.name == "rpc queue.enqueue"]
    trace_id = request.context.trace_id

    def names_in_trace() -> set[str]:
        return {s.name for s in spans.get_finished_spans() if s.context.trace_id == trace_id}

    # a consumer's span ends just after its append is acknowledged, which can be
    # after the event reached the client; the exporter offers nothing to await
    async with asyncio.timeout(10):
        while "consume reward" not in names_in_trace():
            await asyncio.sleep(0.01)
    finished = spans.get_finished_spans()
    in_trace = [s for s in finished if s.context.trace_id == trace_id]
    names = {s.name for s in in_trace}
    for expected in (
        "rpc queue.enqueue",  # the gateway
        "command queue.enqueue",  # the commands service
        "consume processor",  # reacting to task.enqueued: task.started
        "consume reward",  # reacting to task.step_completed: reward.granted
        "event to client",  # the events reaching this player's session
    ):
        assert expected in names, f"{expected!r} missing from the request's trace: {sorted(names)}"
    by_id = {s.context.span_id: s for s in in_trace}
    for s in in_trace:  # one tree: every span's parent is in the same trace, up to the request
        if s is not request:
            assert s.parent is not None and s.parent.trace_id == trace_id
    assert request.parent is None or request.parent.span_id not in by_id
