"""The OpenRPC document of the API, generated from the param Structs that validate requests.

`services/contract/protocol.py` holds the one definition of every method; this module
only renders it, so `rpc.discover` cannot disagree with what the server accepts.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec

from questlog.services.contract.protocol import METHODS

OPENRPC_VERSION = "1.3.2"
API_VERSION = "1.0.0"

_ERRORS = [
    (-32001, "not authenticated"),
    (-32003, "forbidden"),
    (-32004, "not found"),
    (-32009, "conflict"),
    (-32010, "rule violated"),
    (-32029, "rate limited"),
]


@cache
def openrpc_document() -> dict[str, Any]:
    structs = sorted({m.params for m in METHODS.values()}, key=lambda t: t.__name__)
    _, components = msgspec.json.schema_components(structs, ref_template="#/components/schemas/{name}")
    methods = []
    for m in METHODS.values():
        schema = components[m.params.__name__]
        required = set(schema.get("required", []))
        params = [
            {"name": name, "required": name in required, "schema": prop}
            for name, prop in schema.get("properties", {}).items()
        ]
        tags = [{"name": m.kind}] + ([{"name": "admin"}] if m.admin else [])
        methods.append(
            {
                "name": m.name,
                "summary": m.summary,
                "paramStructure": "by-name",
                "params": params,
                "result": {"name": "result", "schema": {}},
                "tags": tags,
            }
        )
    return {
        "openrpc": OPENRPC_VERSION,
        "info": {"title": "questlog client API", "version": API_VERSION},
        "methods": methods,
        "components": {
            "schemas": components,
            "errors": {str(code): {"code": code, "message": msg} for code, msg in _ERRORS},
        },
    }
