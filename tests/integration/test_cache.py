"""Both cache backends keep one contract; the Redis one runs against this machine's Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from hms.cache.backend import Cache, MemoryCache, RedisCache

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[Cache]:
    backend: Cache
    if request.param == "memory":
        backend = MemoryCache()
    else:
        backend = RedisCache.from_url(REDIS_URL, prefix=f"hms-test-{uuid.uuid4().hex}:")
    yield backend
    await backend.close()


async def test_get_set_delete(cache: Cache) -> None:
    assert await cache.get("k") is None
    await cache.set("k", b"v")
    assert await cache.get("k") == b"v"
    await cache.delete("k")
    assert await cache.get("k") is None


async def test_add_only_when_absent(cache: Cache) -> None:
    assert await cache.add("once", b"1")
    assert not await cache.add("once", b"2")
    assert await cache.get("once") == b"1"


async def test_ttl_expires(cache: Cache) -> None:
    await cache.set("short", b"x", ttl=0.05)
    await cache.incr("counter", ttl=0.05)
    await asyncio.sleep(0.15)
    assert await cache.get("short") is None
    assert await cache.get("counter") is None


async def test_incr_is_atomic_under_concurrency(cache: Cache) -> None:
    results = await asyncio.gather(*(cache.incr("n", 2) for _ in range(50)))
    assert sorted(results) == list(range(2, 101, 2))


async def test_ping(cache: Cache) -> None:
    await cache.ping()
