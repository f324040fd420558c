"""JWT tokens: who a caller is and whether they hold the admin role."""

from __future__ import annotations

import time
from collections import OrderedDict
from pathlib import Path

import jwt
import msgspec

from questlog.events.subjects import valid_player_id
from questlog.services.runtime.settings import Settings


class AuthError(Exception):
    """A token is missing, malformed, badly signed or expired; `reason` is readable."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class Identity(msgspec.Struct, frozen=True):
    player_id: str
    roles: tuple[str, ...] = ()
    expires_at: int = 0

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


class TokenVerifier:
    """HS256 with the shared secret; RS256 as well when a public key is configured.

    A token whose signature was checked is remembered (the last `cache_size`):
    a reconnecting client presents the same string again, and a signature
    check is the costliest step of a hello. Its expiry is still checked at every use.
    """

    def __init__(self, settings: Settings, cache_size: int = 10_000) -> None:
        self._secret = settings.jwt_secret
        self._public_key = Path(settings.jwt_public_key).read_text() if settings.jwt_public_key else None
        self._verified: OrderedDict[str, Identity] = OrderedDict()
        self._cache_size = cache_size

    def verify(self, token: str, *, now: float | None = None) -> Identity:
        if not isinstance(token, str) or not token:
            raise AuthError("a token is required")
        identity = self._verified.get(token)
        if identity is None:
            identity = self._check(token)
            self._verified[token] = identity
            while len(self._verified) > self._cache_size:
                self._verified.popitem(last=False)
        else:
            self._verified.move_to_end(token)
        if identity.expires_at <= (time.time() if now is None else now):
            raise AuthError("the token has expired")
        return identity

    def _check(self, token: str) -> Identity:
        """The signature and claims; expiry is the caller's to check."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("the token is not a JWT") from None
        alg = header.get("alg")
        if alg == "HS256" and self._secret:
            key = self._secret
        elif alg == "RS256" and self._public_key:
            key = self._public_key
        else:
            raise AuthError(f"tokens signed with {alg!r} are not accepted")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                options={"require": ["sub", "exp"], "verify_exp": False},
            )
        except jwt.PyJWTError as exc:
            raise AuthError(f"the token is invalid: {exc}") from None
        exp = int(claims["exp"])
        roles = claims.get("roles") or []
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise AuthError("the token's roles claim must be a list of strings")
        sub = claims["sub"]
        if not isinstance(sub, str) or not valid_player_id(sub):
            # the player id becomes a subject token: `*`, `>` or `.` would widen every read
            raise AuthError("the token's sub claim must be a player id: 1-64 letters, digits, '-' or '_'")
        return Identity(player_id=sub, roles=tuple(roles), expires_at=exp)


def issue_token(settings: Settings, player_id: str, *, admin: bool = False, ttl_s: int = 86400) -> str:
    """An HS256 token signed with the configured secret (dev logins, the CLI, tests)."""
    if not settings.jwt_secret:
        raise AuthError("no JWT secret is configured")
    now = int(time.time())
    claims: dict[str, object] = {"sub": player_id, "iat": now, "exp": now + ttl_s}
    if admin:
        claims["roles"] = ["admin"]
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
