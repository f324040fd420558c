"""The OpenRPC document of the API, rendered from the method Structs and their result Structs.

Every method is one Struct (`services/contract/protocol.py: METHODS`); this module
only renders it, so `rpc.discover` cannot disagree with what the server accepts.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec

from questlog.services.contract import protocol
from questlog.services.contract.protocol import METHODS
from questlog.services.contract.results import RESULTS

OPENRPC_VERSION = "1.3.2"
API_VERSION = "1.0.0"

# any call may get these; a method lists its own beside them
_COMMON = (protocol.INVALID_PARAMS, protocol.NOT_AUTHENTICATED, protocol.RATE_LIMITED, protocol.INTERNAL_ERROR)


@cache
def openrpc_document() -> dict[str, Any]:
    params = sorted({m.params for m in METHODS.values()}, key=lambda t: t.__name__)
    results = [RESULTS[name] for name in sorted({m.result for m in METHODS.values()})]
    _, components = msgspec.json.schema_components([*params, *results], ref_template="#/components/schemas/{name}")
    methods = []
    for m in METHODS.values():
        schema = components[m.params.__name__]
        required = set(schema.get("required", []))
        fields = [
            {"name": name, "required": name in required, "schema": prop}
            for name, prop in schema.get("properties", {}).items()
        ]
        tags = [{"name": m.kind}] + ([{"name": "admin"}] if m.admin else [])
        methods.append(
            {
                "name": m.name,
                "summary": m.summary,
                "paramStructure": "by-name",
                "params": fields,
                "result": {"name": "result", "schema": _result_schema(m.result)},
                "errors": [{"$ref": f"#/components/errors/{code}"} for code in (*m.errors, *_COMMON)],
                "tags": tags,
            }
        )
    codes = {code for m in METHODS.values() for code in m.errors} | set(_COMMON)
    return {
        "openrpc": OPENRPC_VERSION,
        "info": {"title": "questlog client API", "version": API_VERSION},
        "methods": methods,
        "components": {
            "schemas": components,
            "errors": {
                str(code): {"code": code, "message": protocol.outcome_name(code).replace("_", " ")}
                for code in sorted(codes, reverse=True)
            },
        },
    }


def _result_schema(name: str) -> dict[str, Any]:
    result = RESULTS[name]
    if isinstance(result, type):
        return {"$ref": f"#/components/schemas/{name}"}
    return msgspec.json.schema_components([result], ref_template="#/components/schemas/{name}")[0][0]
