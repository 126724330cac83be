"""Cost budgets: token buckets that refill over time, one per caller and one per hospital.

Every request reserves its estimated cost from two buckets at once — the caller's (principal
and client application) and its hospital's, so one tenant cannot starve the others — and gets
the difference back once it is known what the answer really cost. With Redis, both steps are
one Lua script each, atomic across every worker; without Redis (one process, the embedded
default) the same arithmetic runs in process memory.

A bucket is ``(tokens, at)``: the level at time ``at``; it refills at ``rate`` tokens a second
up to ``capacity``. Time is the Redis server's own clock (``TIME``), so workers whose clocks
differ agree.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from opentelemetry import trace
from opentelemetry.trace import SpanKind

if TYPE_CHECKING:
    import redis.asyncio as redis


@dataclasses.dataclass(frozen=True)
class Rate:
    """A bucket's size and how fast it refills (tokens a second)."""

    capacity: float
    per_second: float

    def __post_init__(self) -> None:
        if self.capacity <= 0 or self.per_second <= 0:
            raise ValueError("a budget needs a positive capacity and refill rate")


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a reservation found: admitted or not, the caller's level after it, and — when not
    admitted — the seconds until the cost would fit (``math.inf``: it never will)."""

    admitted: bool
    available: float
    wait: float = 0.0


TRACER = trace.get_tracer("hms")


class BudgetUnavailable(Exception):
    """The budget store cannot be reached."""


class Budgets(Protocol):
    async def reserve(
        self, caller: str, hospital: str, cost: float, rates: tuple[Rate, Rate], *, force: bool
    ) -> Outcome:
        """Take ``cost`` from both buckets if both hold it (or, with ``force``, anyway, down
        to zero at most) — atomically."""
        ...

    async def refund(
        self, caller: str, hospital: str, amount: float, rates: tuple[Rate, Rate]
    ) -> float:
        """Give ``amount`` back to both buckets (never above capacity): the caller's level."""
        ...

    async def peek(self, caller: str, rates: tuple[Rate, Rate]) -> float:
        """The caller's level now, changing nothing."""
        ...

    async def close(self) -> None: ...


# --- Redis ----------------------------------------------------------------------------------

# KEYS: the caller's bucket, the hospital's bucket.
# ARGV: operation (reserve | refund | peek), amount, caller capacity, caller rate,
#       hospital capacity, hospital rate, force (1/0).
# Returns {admitted 1/0, caller level, seconds to wait (-1: never)} as strings (a Lua number
# would come back truncated to an integer).
_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local op, amount = ARGV[1], tonumber(ARGV[2])
local caps = {tonumber(ARGV[3]), tonumber(ARGV[5])}
local rates = {tonumber(ARGV[4]), tonumber(ARGV[6])}
local levels = {}
for i = 1, 2 do
  local stored = redis.call('HMGET', KEYS[i], 'tokens', 'at')
  local tokens, at = tonumber(stored[1]), tonumber(stored[2])
  if tokens == nil then
    levels[i] = caps[i]
  else
    levels[i] = math.min(caps[i], tokens + math.max(0, now - at) * rates[i])
  end
end
if op == 'peek' then
  return {'1', tostring(levels[1]), '0'}
end
local admitted, wait = 1, 0
if op == 'reserve' then
  for i = 1, 2 do
    if levels[i] < amount then
      admitted = 0
      if amount > caps[i] then
        wait = -1
      elseif wait >= 0 then
        wait = math.max(wait, (amount - levels[i]) / rates[i])
      end
    end
  end
  if admitted == 1 or ARGV[7] == '1' then
    for i = 1, 2 do levels[i] = math.max(0, levels[i] - amount) end
  end
else
  for i = 1, 2 do levels[i] = math.min(caps[i], levels[i] + amount) end
end
for i = 1, 2 do
  redis.call('HSET', KEYS[i], 'tokens', tostring(levels[i]), 'at', tostring(now))
  -- A full bucket needs no key: it expires once it would have refilled.
  redis.call('PEXPIRE', KEYS[i], math.ceil((caps[i] - levels[i]) / rates[i] * 1000) + 1000)
end
return {tostring(admitted), tostring(levels[1]), tostring(wait)}
"""


class RedisBudgets:
    def __init__(self, client: redis.Redis, *, prefix: str = "hms:") -> None:
        self.client = client
        self.prefix = prefix
        self.script = client.register_script(_SCRIPT)
        # Imported with a client only (hms.cache.backend says why).
        from redis.exceptions import RedisError

        self._errors: tuple[type[Exception], ...] = (RedisError, OSError)

    @classmethod
    def from_url(cls, url: str) -> RedisBudgets:
        from redis.asyncio import Redis

        return cls(Redis.from_url(url, socket_timeout=1.0))

    async def _run(
        self,
        op: str,
        caller: str,
        hospital: str,
        amount: float,
        rates: tuple[Rate, Rate],
        force: bool,
    ) -> tuple[bool, float, float]:
        mine, theirs = rates
        try:
            with TRACER.start_as_current_span(
                "redis EVALSHA",
                kind=SpanKind.CLIENT,
                attributes={"db.system": "redis", "db.operation": "EVALSHA", "hms.budget": op},
                record_exception=False,
            ):
                admitted, level, wait = await self.script(
                    keys=[self.prefix + caller, self.prefix + hospital],
                    args=[
                        op, repr(float(amount)),
                        repr(mine.capacity), repr(mine.per_second),
                        repr(theirs.capacity), repr(theirs.per_second),
                        "1" if force else "0",
                    ],
                )  # fmt: skip
        except self._errors as error:
            raise BudgetUnavailable(type(error).__name__) from None
        seconds = float(wait)
        return admitted in (b"1", "1"), float(level), math.inf if seconds < 0 else seconds

    async def reserve(
        self, caller: str, hospital: str, cost: float, rates: tuple[Rate, Rate], *, force: bool
    ) -> Outcome:
        admitted, level, wait = await self._run("reserve", caller, hospital, cost, rates, force)
        return Outcome(admitted, level, wait)

    async def refund(
        self, caller: str, hospital: str, amount: float, rates: tuple[Rate, Rate]
    ) -> float:
        return (await self._run("refund", caller, hospital, amount, rates, False))[1]

    async def peek(self, caller: str, rates: tuple[Rate, Rate]) -> float:
        return (await self._run("peek", caller, caller, 0, rates, False))[1]

    async def close(self) -> None:
        await self.client.aclose()


# --- one process ----------------------------------------------------------------------------


class MemoryBudgets:
    """The same buckets in this process's memory: right for a single worker without Redis."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def _level(self, key: str, rate: Rate, now: float) -> float:
        stored = self._buckets.get(key)
        if stored is None:
            return rate.capacity
        tokens, at = stored
        return min(rate.capacity, tokens + max(0.0, now - at) * rate.per_second)

    async def reserve(
        self, caller: str, hospital: str, cost: float, rates: tuple[Rate, Rate], *, force: bool
    ) -> Outcome:
        now = self.clock()
        keys = (caller, hospital)
        levels = [self._level(k, r, now) for k, r in zip(keys, rates, strict=True)]
        short = [(level, rate) for level, rate in zip(levels, rates, strict=True) if level < cost]
        wait = 0.0
        for level, rate in short:
            wait = max(wait, math.inf if cost > rate.capacity else (cost - level) / rate.per_second)
        if not short or force:
            levels = [max(0.0, level - cost) for level in levels]
        for key, level in zip(keys, levels, strict=True):
            self._buckets[key] = (level, now)
        return Outcome(not short, levels[0], wait)

    async def refund(
        self, caller: str, hospital: str, amount: float, rates: tuple[Rate, Rate]
    ) -> float:
        now = self.clock()
        levels = []
        for key, rate in zip((caller, hospital), rates, strict=True):
            level = min(rate.capacity, self._level(key, rate, now) + amount)
            self._buckets[key] = (level, now)
            levels.append(level)
        return levels[0]

    async def peek(self, caller: str, rates: tuple[Rate, Rate]) -> float:
        return self._level(caller, rates[0], self.clock())

    async def close(self) -> None:
        self._buckets.clear()
