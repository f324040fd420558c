"""This process's own counters for `/metrics`, beside the OpenTelemetry ones."""

from __future__ import annotations

import msgspec


class Metrics(msgspec.Struct):
    """This process's own counters for `/metrics`, beside the OpenTelemetry ones
    (connections, recoveries and rate-limit refusals are OpenTelemetry's)."""

    sessions_total: int = 0
    requests: int = 0
    errors: int = 0
    events_sent: int = 0
    too_slow: int = 0
    refused_connections: int = 0

    def render(self, gateway_id: str) -> str:
        lines = []
        for name, value in msgspec.structs.asdict(self).items():
            lines.append(f"# TYPE questlog_gateway_{name} counter")
            lines.append(f'questlog_gateway_{name}{{gateway="{gateway_id}"}} {value}')
        return "\n".join(lines) + "\n"
