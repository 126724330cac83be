"""The two-level cache's own rules, on a clock the test moves and an L2 that can be told to fail
(tests/integration/test_tiered_cache.py runs it on real Redis, across workers)."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from hms.cache.backend import MemoryCache
from hms.cache.tiered import Tiered


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Watched(MemoryCache):
    """The process-memory backend, counting reads and failing on request."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: Counter[str] = Counter()
        self.failing_values = False
        self.failing_writes = False

    async def get(self, key: str) -> bytes | None:
        kind = "version" if key.startswith("v1:ns:") else "value"
        self.reads[kind] += 1
        if kind == "value" and self.failing_values:
            raise ConnectionError("down")
        return await super().get(key)

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        if self.failing_writes:
            raise ConnectionError("down")
        await super().set(key, value, ttl=ttl)


def source(value: bytes | None, calls: list[str]):  # type: ignore[no-untyped-def]
    async def load() -> bytes | None:
        calls.append("load")
        return value

    return load


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def test_an_l1_value_lives_exactly_its_ttl(clock: Clock) -> None:
    l2 = Watched()
    tier = Tiered(l2, clock=clock, version_ttl=3600)
    calls: list[str] = []
    await tier.get_or_load("ns", "k", source(b"v", calls), ttl=10, kind="t")
    clock.now += 9.999
    await tier.get_or_load("ns", "k", source(b"v", calls), ttl=10, kind="t")
    assert l2.reads["value"] == 1  # the second came from L1
    clock.now += 0.001  # exactly ttl: gone from L1
    await tier.get_or_load("ns", "k", source(b"v", calls), ttl=10, kind="t")
    assert l2.reads["value"] == 2


async def test_a_namespace_version_is_read_once_per_version_ttl(clock: Clock) -> None:
    l2 = Watched()
    tier = Tiered(l2, clock=clock, version_ttl=5)
    other = Tiered(l2, clock=clock, version_ttl=5)  # a second worker without pub/sub
    for key in ("a", "b", "c"):
        await tier.get_or_load("ns", key, source(b"1", []), ttl=60, kind="t")
    assert l2.reads["version"] == 1
    assert await other.get_or_load("ns", "a", source(b"2", []), ttl=60, kind="t") == b"1"
    await other.invalidate("ns")
    clock.now += 4.999  # this worker still trusts its copy of the version
    assert await tier.get_or_load("ns", "a", source(b"2", []), ttl=60, kind="t") == b"1"
    clock.now += 0.001  # and then asks again: the bump is seen
    assert await tier.get_or_load("ns", "a", source(b"2", []), ttl=60, kind="t") == b"2"
    # A namespace that was never bumped is version 0; a bumped one moved on.
    assert await l2.get("v1:ns:ns") == b"1"


async def test_l1_keeps_the_most_recently_used(clock: Clock) -> None:
    l2 = Watched()
    tier = Tiered(l2, clock=clock, size=2)
    for key in ("a", "b"):
        await tier.get_or_load("ns", key, source(key.encode(), []), ttl=60, kind="t")
    await tier.get_or_load("ns", "a", source(b"a", []), ttl=60, kind="t")  # a is recent now
    await tier.get_or_load("ns", "c", source(b"c", []), ttl=60, kind="t")  # b leaves L1
    reads = l2.reads["value"]
    await tier.get_or_load("ns", "a", source(b"a", []), ttl=60, kind="t")
    await tier.get_or_load("ns", "c", source(b"c", []), ttl=60, kind="t")
    assert l2.reads["value"] == reads  # both from L1
    await tier.get_or_load("ns", "b", source(b"b", []), ttl=60, kind="t")
    assert l2.reads["value"] == reads + 1  # b had to come from L2


async def test_waiters_share_the_loads_failure_and_nothing_is_kept(clock: Clock) -> None:
    tier = Tiered(Watched(), clock=clock)
    started = asyncio.Event()

    async def broken() -> bytes | None:
        started.set()
        await asyncio.sleep(0.01)
        raise RuntimeError("source down")

    first = asyncio.create_task(tier.get_or_load("ns", "k", broken, ttl=60, kind="t"))
    await started.wait()
    second = asyncio.create_task(tier.get_or_load("ns", "k", broken, ttl=60, kind="t"))
    for task in (first, second):
        with pytest.raises(RuntimeError, match="source down"):
            await task
    calls: list[str] = []
    assert await tier.get_or_load("ns", "k", source(b"v", calls), ttl=60, kind="t") == b"v"
    assert calls == ["load"]


async def test_an_l2_that_fails_costs_a_load_never_an_answer(clock: Clock) -> None:
    l2 = Watched()
    counted: Counter[str] = Counter()
    tier = Tiered(l2, clock=clock, count=lambda result, kind: counted.update([result]))
    l2.failing_values = True
    calls: list[str] = []
    assert await tier.get_or_load("ns", "k", source(b"v", calls), ttl=60, kind="t") == b"v"
    assert (calls, counted["fallback"]) == (["load"], 1)
    l2.failing_values, l2.failing_writes = False, True
    assert await tier.get_or_load("ns", "j", source(b"w", calls), ttl=60, kind="t") == b"w"
    assert counted == Counter({"fallback": 2, "miss": 1})
    # Kept in L1 all the same: the next read does not load again.
    assert await tier.get_or_load("ns", "j", source(b"x", calls), ttl=60, kind="t") == b"w"
    assert len(calls) == 2


async def test_listening_needs_redis_and_returns_at_once_without() -> None:
    await asyncio.wait_for(Tiered(MemoryCache()).listen(), timeout=1)
