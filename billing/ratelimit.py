"""Rate limits (requests and tokens per minute) that hold across every server process.

Algorithm: GCRA (the generic cell rate algorithm). Why: each limit is one number (the
"theoretical arrival time"), so an atomic check-and-set is a single read and write, in Redis or
in one database row; it has no window edges that let twice the limit through (a fixed window
does), needs no per-request entries (a sliding log does), and yields the exact time to wait,
which becomes `Retry-After`. A limit of N per minute allows a burst of N and then one more every
60/N seconds; a request costing k units (tokens) uses k of them at once.

Several limits are taken together and all-or-nothing: a request refused by one limit uses up none
of the others. With REDIS_URL the state lives in Redis (one Lua script, Redis' own clock);
without it, in `RateLimitBucket` rows locked for the caller's transaction (SQLite serialises
writers; PostgreSQL locks the rows), so it also holds for several processes on one database.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cache

from django.conf import settings
from django.db import transaction

from aihub import shared_state

from .models import RateLimitBucket

PERIOD_SECONDS = 60.0


@dataclass(frozen=True)
class Limit:
    key: str  # e.g. "rpm:user:12"
    per_minute: int
    cost: int = 1

    @property
    def interval(self) -> float:
        """Seconds of allowance one unit uses."""
        return PERIOD_SECONDS / self.per_minute


def take(limits: list[Limit]) -> float:
    """Use one request's allowance of every limit, or none. Returns 0, or the seconds to wait."""
    if not limits:
        return 0.0
    if shared_state.redis_configured():
        return _take_redis(limits)
    return _take_database(limits)


def _wait(tat: float, limit: Limit, now: float) -> tuple[float, float]:
    """(new arrival time, seconds to wait before it would be allowed) for one limit."""
    new_tat = max(tat, now) + limit.interval * limit.cost
    return new_tat, max(0.0, new_tat - PERIOD_SECONDS - now)


def _take_database(limits: list[Limit]) -> float:
    keys = sorted({limit.key for limit in limits})
    with transaction.atomic():
        RateLimitBucket.objects.bulk_create([RateLimitBucket(key=k, tat=0.0) for k in keys], ignore_conflicts=True)
        # Locked in key order (no deadlocks): concurrent requests of the same caller take turns here.
        rows = {
            row.key: row for row in RateLimitBucket.objects.select_for_update().filter(key__in=keys).order_by("key")
        }
        now = time.time()
        waits, changed = [], []
        for limit in limits:
            row = rows[limit.key]
            row.tat, wait = _wait(row.tat, limit, now)
            waits.append(wait)
            changed.append(row)
        if max(waits) > 0:
            return max(waits)
        RateLimitBucket.objects.bulk_update(changed, ["tat"])
    return 0.0


# KEYS: one per limit. ARGV: period, then (interval, cost) per limit. Returns the wait as a string
# (Lua numbers would be truncated to integers on the way back).
_GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local period = tonumber(ARGV[1])
local wait = 0
local new = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i])
  local cost = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  new[i] = tat + interval * cost
  local w = new[i] - period - now
  if w > wait then wait = w end
end
if wait > 0 then return tostring(wait) end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], tostring(new[i]), 'PX', math.ceil((new[i] - now) * 1000) + 1000)
end
return '0'
"""


@cache
def _redis_script():
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    return client.register_script(_GCRA_LUA)


def _take_redis(limits: list[Limit]) -> float:
    args: list[float] = [PERIOD_SECONDS]
    for limit in limits:
        args += [limit.interval, limit.cost]
    result = _redis_script()(keys=[f"aihub:gcra:{limit.key}" for limit in limits], args=args)
    return float(result)
