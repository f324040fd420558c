"""Token buckets in Redis, per player and per address, shared by every gateway process.

One Lua script refills and takes in a single round trip, on Redis's own clock
(`TIME`), so gateways with skewed clocks still agree.
"""

from __future__ import annotations

import msgspec
import redis.asyncio as aioredis

_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1])
local ts = tonumber(b[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
local allowed = 0
local retry = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry = math.ceil((cost - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return {allowed, retry}
"""


class Bucket(msgspec.Struct, frozen=True):
    rate_per_s: float
    burst: int


class RateLimiter:
    def __init__(self, redis: aioredis.Redis, prefix: str = "ratelimit") -> None:
        self._redis = redis
        self._prefix = prefix
        self._script = redis.register_script(_TAKE)

    async def take(self, scope: str, key: str, bucket: Bucket, cost: int = 1) -> int:
        """0 when allowed, else how many milliseconds until `cost` tokens are there."""
        allowed, retry = await self._script(
            keys=[f"{self._prefix}:{scope}:{key}"], args=[bucket.rate_per_s, bucket.burst, cost]
        )
        return 0 if int(allowed) else max(1, int(retry))
