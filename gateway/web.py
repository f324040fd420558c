"""The bundled web client (`/`, `/static/…`) and, in dev mode only, the dev login.

The page is plain ES modules under `gateway/static/`: no build step, served as
files. `POST /dev/token {player_id}` answers `{token, player_id, expires_at}`
for any valid player id; the route exists only when `settings.dev_mode` is true
(`questlog up` sets it), so a production gateway has no way to mint tokens.
"""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler

from questlog.events.subjects import valid_player_id
from questlog.services.runtime.settings import Settings

from .auth import AuthError, issue_token

STATIC_DIR = Path(__file__).parent / "static"
DEV_TOKEN_TTL_S = 24 * 3600
_NO_CACHE = {"Cache-Control": "no-cache"}  # a new gateway version is picked up without a hard reload


class DevTokenRequest(msgspec.Struct, forbid_unknown_fields=True):
    player_id: str


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers=_NO_CACHE)


def dev_token_handler(settings: Settings) -> Handler:
    async def dev_token(request: web.Request) -> web.Response:
        try:
            body = msgspec.json.decode(await request.read(), type=DevTokenRequest)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return web.json_response({"error": f'expected {{"player_id": "…"}}: {exc}'}, status=400)
        if not valid_player_id(body.player_id):
            return web.json_response({"error": "a player id is 1 to 64 of A-Z a-z 0-9 _ -"}, status=400)
        try:
            token = issue_token(settings, body.player_id, ttl_s=DEV_TOKEN_TTL_S)
        except AuthError as exc:
            return web.json_response({"error": exc.reason}, status=503)
        expires_at = int(time.time()) + DEV_TOKEN_TTL_S
        return web.json_response({"token": token, "player_id": body.player_id, "expires_at": expires_at})

    return dev_token


def add_web_routes(app: web.Application, settings: Settings) -> None:
    """`/` and `/static/`; `POST /dev/token` only in dev mode."""
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC_DIR, append_version=False)
    if settings.dev_mode:
        app.router.add_post("/dev/token", dev_token_handler(settings))
