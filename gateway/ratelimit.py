"""Token buckets in Redis, per player and per address, shared by every gateway process.

One Lua script refills and takes on Redis's own clock (`TIME`), so gateways
with skewed clocks still agree. A call names all its buckets (its address's,
its player's) and takes from all or from none. The calls of one moment share
one script run (`services/runtime/batching.py`): a round trip costs the gateway far
more CPU than the script costs Redis.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import redis.asyncio as aioredis

from questlog.services.runtime.batching import Coalescer

# KEYS: every bucket of every call, in order. ARGV per call: n, then n x (rate, burst, cost).
# -> per call {allowed, retry_ms}
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
local k, a = 1, 1
while a <= #ARGV do
  local n = tonumber(ARGV[a])
  a = a + 1
  local allowed, retry, seen = 1, 0, {}
  for j = 1, n do
    local rate, burst, cost = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    a = a + 3
    local b = redis.call('HMGET', KEYS[k], 'tokens', 'ts')
    local tokens, ts = tonumber(b[1]), tonumber(b[2])
    if tokens == nil or ts == nil then
      tokens, ts = burst, now
    end
    tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
    if tokens < cost then
      allowed = 0
      retry = math.max(retry, math.ceil((cost - tokens) * 1000 / rate))
    end
    seen[j] = {KEYS[k], tokens, cost, math.ceil(burst * 1000 / rate) + 1000}
    k = k + 1
  end
  for j = 1, n do
    local s = seen[j]
    local left = s[2]
    if allowed == 1 then left = left - s[3] end
    redis.call('HSET', s[1], 'tokens', tostring(left), 'ts', tostring(now))
    redis.call('PEXPIRE', s[1], s[4])
  end
  out[#out + 1] = {allowed, retry}
end
return out
"""


class Bucket(msgspec.Struct, frozen=True):
    rate_per_s: float
    burst: int


class Claim(msgspec.Struct, frozen=True):
    """`cost` tokens from the bucket of (`scope`, `key`)."""

    scope: str
    key: str
    bucket: Bucket
    cost: int = 1


class RateLimiter:
    def __init__(self, redis: aioredis.Redis, prefix: str = "ratelimit") -> None:
        self._redis = redis
        self._prefix = prefix
        self._script = redis.register_script(_TAKE)
        self._take = Coalescer(self._take_batch)

    async def take(self, claims: Sequence[Claim]) -> int:
        """0 when every claim was granted, else how many milliseconds until all could be (nothing taken)."""
        merged: dict[tuple[str, str], Claim] = {}  # the script reads each bucket once per call
        for c in claims:
            same = merged.get((c.scope, c.key))
            merged[c.scope, c.key] = c if same is None else msgspec.structs.replace(same, cost=same.cost + c.cost)
        allowed, retry = await self._take(tuple(merged.values()))
        return 0 if allowed else max(1, retry)

    async def _take_batch(self, calls: list[tuple[Claim, ...]]) -> list[tuple[bool, int]]:
        keys: list[str] = []
        args: list[float | int] = []
        for claims in calls:
            args.append(len(claims))
            for c in claims:
                keys.append(f"{self._prefix}:{c.scope}:{c.key}")
                args.extend((c.bucket.rate_per_s, c.bucket.burst, c.cost))
        answers = await self._script(keys=keys, args=args)
        return [(bool(int(allowed)), int(retry)) for allowed, retry in answers]
