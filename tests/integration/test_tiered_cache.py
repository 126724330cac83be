"""The two-level cache against real Redis (issue 12): L1 per worker, L2 shared; a miss loads
once per worker; a version bump in one worker reaches the others; Redis down costs no answer."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from hms.cache.backend import MemoryCache, RedisCache
from hms.cache.tiered import Tiered

REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def workers() -> AsyncIterator[tuple[Tiered, Tiered, Counter[str]]]:
    """Two workers' caches over one Redis (a prefix of this test's own), listening."""
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    counted: Counter[str] = Counter()
    caches = [RedisCache.from_url(REDIS, prefix=prefix) for _ in range(2)]
    tiers = [Tiered(c, count=lambda result, kind: counted.update([result])) for c in caches]
    listening = [asyncio.create_task(t.listen()) for t in tiers]
    await asyncio.sleep(0.2)  # subscribed
    try:
        yield tiers[0], tiers[1], counted
    finally:
        for task in listening:
            task.cancel()
        for cache in caches:
            await cache.close()


def loader(value: bytes | None, calls: list[int], delay: float = 0.0):  # type: ignore[no-untyped-def]
    async def load() -> bytes | None:
        calls.append(1)
        await asyncio.sleep(delay)
        return value

    return load


async def test_l1_then_l2_then_source(workers: tuple[Tiered, Tiered, Counter[str]]) -> None:
    first, second, counted = workers
    calls: list[int] = []
    load = loader(b"practitioners", calls)
    assert await first.get_or_load("ref:h1", "k", load, ttl=60, kind="t") == b"practitioners"
    assert await first.get_or_load("ref:h1", "k", load, ttl=60, kind="t") == b"practitioners"
    assert await second.get_or_load("ref:h1", "k", load, ttl=60, kind="t") == b"practitioners"
    assert len(calls) == 1
    assert counted == Counter({"miss": 1, "hit_l1": 1, "hit_l2": 1})


async def test_a_hot_miss_loads_once_per_worker(
    workers: tuple[Tiered, Tiered, Counter[str]],
) -> None:
    first, _, _ = workers
    calls: list[int] = []
    load = loader(b"v", calls, delay=0.05)
    got = await asyncio.gather(
        *(first.get_or_load("ref:h2", "hot", load, ttl=60, kind="t") for _ in range(25))
    )
    assert got == [b"v"] * 25
    assert len(calls) == 1


async def test_an_invalidation_reaches_every_worker(
    workers: tuple[Tiered, Tiered, Counter[str]], caplog: pytest.LogCaptureFixture
) -> None:
    """By its message, not by a listener that broke and forgot everything."""
    first, second, _ = workers
    old, new = loader(b"old", []), loader(b"new", [])
    assert await second.get_or_load("ref:h3", "k", old, ttl=60, kind="t") == b"old"
    await first.invalidate("ref:h3")
    for _ in range(50):  # the message arrives within moments
        if await second.get_or_load("ref:h3", "k", new, ttl=60, kind="t") == b"new":
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("worker 2 still answers from before the invalidation")
    # Another namespace is untouched.
    kept = loader(b"other", [])
    assert await second.get_or_load("ref:h4", "k", kept, ttl=60, kind="t") == b"other"
    await first.invalidate("ref:h3")
    assert await second.get_or_load("ref:h4", "k", loader(b"x", []), ttl=60, kind="t") == b"other"
    await asyncio.sleep(0.1)
    assert "ref:h4" in second._versions  # only the bumped namespace was forgotten
    assert "cache invalidations interrupted" not in caplog.text


async def test_nothing_is_kept_of_a_failed_or_empty_load(
    workers: tuple[Tiered, Tiered, Counter[str]],
) -> None:
    first, _, _ = workers
    calls: list[int] = []
    assert await first.get_or_load("ref:h5", "k", loader(None, calls), ttl=60, kind="t") is None

    async def broken() -> bytes | None:
        raise RuntimeError("source down")

    with pytest.raises(RuntimeError):
        await first.get_or_load("ref:h5", "k", broken, ttl=60, kind="t")
    assert await first.get_or_load("ref:h5", "k", loader(b"v", calls), ttl=60, kind="t") == b"v"
    assert len(calls) == 2


async def test_redis_down_costs_speed_not_answers() -> None:
    dead = RedisCache(redis.Redis.from_url("redis://127.0.0.1:1/0", socket_timeout=0.2))
    counted: Counter[str] = Counter()
    tier = Tiered(dead, count=lambda result, kind: counted.update([result]))
    calls: list[int] = []
    for _ in range(3):
        assert await tier.get_or_load("ref:h6", "k", loader(b"v", calls), ttl=60, kind="t") == b"v"
    assert len(calls) == 3
    assert counted["fallback"] == 3
    await dead.close()


async def test_one_process_without_redis_invalidates_directly() -> None:
    tier = Tiered(MemoryCache())
    assert await tier.get_or_load("ref:h7", "k", loader(b"old", []), ttl=60, kind="t") == b"old"
    await tier.invalidate("ref:h7")
    assert await tier.get_or_load("ref:h7", "k", loader(b"new", []), ttl=60, kind="t") == b"new"


async def test_a_lost_subscription_forgets_every_version_and_comes_back(
    workers: tuple[Tiered, Tiered, Counter[str]], caplog: pytest.LogCaptureFixture
) -> None:
    """Redis drops the subscriber (a restart, a failover): invalidations sent meanwhile are
    lost, so the worker forgets every namespace's version, and subscribes again."""
    first, second, _ = workers
    await second.get_or_load("ref:h8", "k", loader(b"old", []), ttl=60, kind="t")
    assert "ref:h8" in second._versions
    admin = redis.Redis.from_url(REDIS)
    try:
        killed = await admin.client_kill_filter(_type="pubsub")
        assert killed >= 2  # both workers' subscriptions
        for _ in range(100):
            if "cache invalidations interrupted" in caplog.text:
                break
            await asyncio.sleep(0.02)
        assert "ref:h8" not in second._versions
        # Subscribed again (after a second's pause): a new bump is heard.
        assert isinstance(first.l2, RedisCache)
        channel = first.l2.prefix + "hms:invalidate"
        for _ in range(150):
            if await admin.pubsub_numsub(channel) == [(channel.encode(), 2)]:
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("the workers did not subscribe again")
    finally:
        await admin.aclose()
    await second.get_or_load("ref:h8", "k", loader(b"old", []), ttl=60, kind="t")
    await first.invalidate("ref:h8")
    for _ in range(50):
        if await second.get_or_load("ref:h8", "k", loader(b"new", []), ttl=60, kind="t") == b"new":
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("a bump after the resubscription was not heard")
