"""Redis read models: what `queue.get` and `player.get` serve, leaderboards, global stats.

Five projections, each in its own namespace so it can be rebuilt blue/green:

| name | keys (`<ns>` is `a` or `b`) |
|---|---|
| queue | `ql:queue:<ns>:p:<player>` the queue view (JSON) |
| profile | `ql:profile:<ns>:p:<player>` the player view (JSON) |
| leaderboard | `ql:leaderboard:<ns>:total`, `ql:leaderboard:<ns>:skill:<skill>` (sorted sets of xp) |
| stats | `ql:stats:<ns>` (hash: counts per activity), `ql:stats:<ns>:contrib:<player>` |
| due | `ql:due:<ns>:players` (sorted set: when each queue next needs a service, ms; `due.attention_at`) |

Every projection also keeps `ql:<name>:<ns>:seq` (hash player -> the stream
sequence its data reflects) and `ql:<name>:<ns>:position` (the highest one).
One Lua script applies players' new states to any set of projections and
namespaces atomically, and only if each sequence is newer than the one
recorded: redelivery, replays and a rebuild racing the live projector all
converge on the newest state. `ReadModels.project` writes many players'
states in one script run (the live projector gathers each event-loop turn's).
Views are computed at the state's own time (never the wall clock), so a
rebuild writes the same bytes the live path did.
`ql:<name>:active` names the serving namespace; `ql:<name>:building` the one a
rebuild is filling.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
import redis.asyncio as aioredis

from .due import attention_at
from .state import PlayerState
from .views import player_view, queue_view

NAMES = ("queue", "profile", "leaderboard", "stats", "due")
NAMESPACES = ("a", "b")

_encoder = msgspec.json.Encoder(order="deterministic")

_APPLY = """
-- ARGV: how many targets ("name:ns") follow, the targets, then a (player, sequence, data)
-- triple per state. No targets: every projection's serving namespace and, while a rebuild
-- runs, its building one, read here so a swap cannot fall between the lookup and the write.
local function apply(pid, seq, data, name, ns)
  local seqkey = 'ql:' .. name .. ':' .. ns .. ':seq'
  local last = tonumber(redis.call('HGET', seqkey, pid) or '0')
  if seq <= last then return 0 end
  if name == 'queue' then
    redis.call('SET', 'ql:queue:' .. ns .. ':p:' .. pid, data.queue)
  elseif name == 'profile' then
    redis.call('SET', 'ql:profile:' .. ns .. ':p:' .. pid, data.profile)
  elseif name == 'leaderboard' then
    redis.call('ZADD', 'ql:leaderboard:' .. ns .. ':total', data.total_xp, pid)
    for skill, xp in pairs(data.skill_xp) do
      redis.call('ZADD', 'ql:leaderboard:' .. ns .. ':skill:' .. skill, xp, pid)
    end
  elseif name == 'due' then
    if data.due >= 0 then
      redis.call('ZADD', 'ql:due:' .. ns .. ':players', data.due, pid)
    else
      redis.call('ZREM', 'ql:due:' .. ns .. ':players', pid)
    end
  elseif name == 'stats' then
    local ckey = 'ql:stats:' .. ns .. ':contrib:' .. pid
    local skey = 'ql:stats:' .. ns
    local old = redis.call('HGETALL', ckey)
    local prev = {}
    for j = 1, #old, 2 do prev[old[j]] = tonumber(old[j + 1]) end
    -- each total moves together with this player's share of it, so a script that
    -- fails halfway and is run again never counts a share twice
    for field, value in pairs(data.contrib) do
      local delta = value - (prev[field] or 0)
      prev[field] = nil
      if delta ~= 0 then
        if redis.call('HINCRBY', skey, field, delta) == 0 then redis.call('HDEL', skey, field) end
        redis.call('HSET', ckey, field, value)
      end
    end
    for field, value in pairs(prev) do
      if redis.call('HINCRBY', skey, field, -value) == 0 then redis.call('HDEL', skey, field) end
      redis.call('HDEL', ckey, field)
    end
  end
  -- last: a script that fails halfway keeps what it wrote, and must not mark it current
  redis.call('HSET', seqkey, pid, seq)
  local poskey = 'ql:' .. name .. ':' .. ns .. ':position'
  if seq > tonumber(redis.call('GET', poskey) or '0') then redis.call('SET', poskey, seq) end
  return 1
end

local n = tonumber(ARGV[1])
local targets = {}
if n == 0 then
  for _, name in ipairs({NAMES}) do
    targets[#targets + 1] = {name, redis.call('GET', 'ql:' .. name .. ':active') or 'a'}
    local building = redis.call('GET', 'ql:' .. name .. ':building')
    if building then targets[#targets + 1] = {name, building} end
  end
else
  for i = 2, n + 1 do
    local name, ns = string.match(ARGV[i], "([^:]+):([^:]+)")
    targets[#targets + 1] = {name, ns}
  end
end
local applied = {}
for i = n + 2, #ARGV, 3 do
  local pid, seq, data = ARGV[i], tonumber(ARGV[i + 1]), cjson.decode(ARGV[i + 2])
  local count = 0
  for _, t in ipairs(targets) do count = count + apply(pid, seq, data, t[1], t[2]) end
  applied[#applied + 1] = count
end
return applied
""".replace("{NAMES}", "{" + ", ".join(f"'{n}'" for n in NAMES) + "}")


def contribution(state: PlayerState) -> dict[str, int]:
    """This player's share of the global stats; the totals are the sums of all shares."""
    s = state.stats
    out = {
        "players": 1,
        "tasks_completed": s.completed,
        "tasks_cancelled": s.cancelled,
        "tasks_failed": s.failed,
        "steps": s.steps,
        "fights_won": s.fights_won,
        "fights_lost": s.fights_lost,
        "crafts_failed": s.crafts_failed,
        "rare_drops": s.rare_drops,
    }
    for activity, n in s.completed_by_activity.items():
        out[f"completed:{activity}"] = n
    for activity, n in s.steps_by_activity.items():
        out[f"steps:{activity}"] = n
    return {k: v for k, v in out.items() if v}


def projection_data(state: PlayerState) -> bytes:
    at = state.updated_at
    assert at is not None, "only a player with events has read models"
    skill_xp = {name: sk.xp for name, sk in state.skills.items()}
    return _encoder.encode(
        {
            "queue": _encoder.encode(queue_view(state, at)).decode(),
            "profile": _encoder.encode(player_view(state)).decode(),
            "total_xp": sum(skill_xp.values()),
            "skill_xp": skill_xp,
            "contrib": contribution(state),
            "due": _millis(attention_at(state)),
        }
    )


def _millis(at: datetime | None) -> int:
    return -1 if at is None else int(at.timestamp() * 1000)


def _text(raw: bytes | str) -> str:
    """redis-py types replies as either; this client does not decode, so they are bytes."""
    return raw.decode() if isinstance(raw, bytes) else raw


def _scored(rows: Any) -> list[tuple[str, float]]:
    return [(_text(member), float(score)) for member, score in rows]


def _triple(state: PlayerState) -> tuple[str, int, bytes]:
    return state.player_id, state.last_seq, projection_data(state)


class ReadModels:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._apply = redis.register_script(_APPLY)

    async def targets(self, names: tuple[str, ...] = NAMES) -> list[str]:
        """`name:ns` for every namespace a projection must be written to now (serving + building)."""
        keys = [f"ql:{n}:{k}" for n in names for k in ("active", "building")]
        values = await self.redis.mget(keys)
        out = []
        for i, name in enumerate(names):
            active, building = values[2 * i], values[2 * i + 1]
            out.append(f"{name}:{_text(active or b'a')}")
            if building:
                out.append(f"{name}:{_text(building)}")
        return out

    async def apply(self, state: PlayerState, targets: list[str]) -> int:
        """Into the named `name:ns` targets (a rebuild); how many it changed."""
        if state.version == 0 or not targets:
            return 0
        (applied,) = await self._apply(args=[len(targets), *targets, *_triple(state)])
        return int(applied)

    async def project(self, states: Sequence[PlayerState]) -> list[int]:
        """Into what serves now and what a rebuild is building (the live projector), in one script
        run; how many projections each state changed."""
        written = [state for state in states if state.version > 0]
        args: list[str | int | bytes] = [0]
        for state in written:
            args += _triple(state)
        changed = iter([int(n) for n in await self._apply(args=args)] if written else [])
        return [next(changed) if state.version > 0 else 0 for state in states]

    async def active(self, name: str) -> str:
        value = await self.redis.get(f"ql:{name}:active")
        return _text(value) if value else "a"

    async def building(self, name: str) -> str | None:
        """The namespace a rebuild of `name` is filling, if one runs."""
        value = await self.redis.get(f"ql:{name}:building")
        return _text(value) if value else None

    async def queue(self, player_id: str) -> dict[str, Any] | None:
        raw = await self.redis.get(f"ql:queue:{await self.active('queue')}:p:{player_id}")
        return msgspec.json.decode(raw) if raw else None

    async def profile(self, player_id: str) -> dict[str, Any] | None:
        raw = await self.redis.get(f"ql:profile:{await self.active('profile')}:p:{player_id}")
        return msgspec.json.decode(raw) if raw else None

    async def leaderboard(self, skill: str | None = None, top: int = 10) -> list[tuple[str, int]]:
        ns = await self.active("leaderboard")
        key = f"ql:leaderboard:{ns}:" + (f"skill:{skill}" if skill else "total")
        rows = await self.redis.zrevrange(key, 0, top - 1, withscores=True)
        return [(player, int(score)) for player, score in _scored(rows)]

    async def stats(self) -> dict[str, int]:
        raw = await self.redis.hgetall(f"ql:stats:{await self.active('stats')}")
        return {_text(k): int(v) for k, v in sorted(raw.items())}

    async def positions(self, player_ids: list[str]) -> dict[str, int]:
        """The stream sequence of each player's newest state in the serving queue projection."""
        if not player_ids:
            return {}
        ns = await self.active("queue")
        values = await self.redis.hmget(f"ql:queue:{ns}:seq", player_ids)
        return {p: int(v) for p, v in zip(player_ids, values, strict=True) if v is not None}

    async def overdue(self, before: datetime, limit: int) -> list[tuple[str, datetime]]:
        """Players whose queue needed a service before `before`, longest overdue first."""
        ns = await self.active("due")
        rows = await self.redis.zrangebyscore(
            f"ql:due:{ns}:players", "-inf", _millis(before), start=0, num=limit, withscores=True
        )
        return [(player, datetime.fromtimestamp(ms / 1000, UTC)) for player, ms in _scored(rows)]

    async def postpone(self, player_id: str, until: datetime) -> None:
        """Look at an overdue player again only after `until` (the sweep found nothing to do);
        the next state the projector writes replaces it."""
        ns = await self.active("due")
        await self.redis.zadd(f"ql:due:{ns}:players", {player_id: _millis(until)}, xx=True)

    async def position(self, name: str) -> int:
        raw = await self.redis.get(f"ql:{name}:{await self.active(name)}:position")
        return int(raw) if raw else 0

    async def drop_namespace(self, name: str, ns: str) -> None:
        patterns = [f"ql:{name}:{ns}:*"]
        if name == "stats":
            patterns.append(f"ql:stats:{ns}")
        for pattern in patterns:
            async for key in self.redis.scan_iter(match=pattern, count=1000):
                await self.redis.unlink(key)
            if "*" not in pattern:
                await self.redis.unlink(pattern)

    async def dump(self, name: str, ns: str | None = None) -> dict[str, Any]:
        """Every key of one projection's namespace, canonically: to compare two builds."""
        ns = ns or await self.active(name)
        out: dict[str, Any] = {}
        keys = [k async for k in self.redis.scan_iter(match=f"ql:{name}:{ns}:*", count=1000)]
        if name == "stats":
            keys.append(f"ql:stats:{ns}".encode())
        for key in sorted(set(keys)):
            kind = _text(await self.redis.type(key))
            short = _text(key).replace(f":{ns}:", ":_:").replace(f":{ns}", ":_")
            if kind == "string":
                out[short] = _text(await self.redis.get(key) or b"")
            elif kind == "hash":
                out[short] = {_text(k): _text(v) for k, v in sorted((await self.redis.hgetall(key)).items())}
            elif kind == "zset":
                out[short] = _scored(await self.redis.zrange(key, 0, -1, withscores=True))
        return out
