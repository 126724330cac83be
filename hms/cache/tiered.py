"""Two cache levels: a bounded in-process L1 in front of the shared L2 (Redis, or memory).

Values live under versioned namespaces (``reference`` of one hospital, say): a key is
``<namespace>:v<version>:<key>``, and :meth:`Tiered.invalidate` moves the namespace to the next
version (one INCR in L2, no key scan), so everything cached before is unreachable at once and
ages out. Every worker learns of the bump: it publishes the namespace on a Redis channel that
each worker's :meth:`Tiered.listen` follows, dropping its L1 copy of that namespace's version;
without pub/sub (memory L2, one process) the bump is seen directly.

A miss is loaded once per worker however many requests want it at the same moment
(single-flight), then kept in L1 and L2. If L2 fails (Redis down) the value is loaded from its
source as if nothing were cached, and ``hms_cache_fallbacks_total`` counts it: a cache outage
costs speed, never an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from hms.cache.backend import Cache, RedisCache

log = logging.getLogger("hms")

CHANNEL = "hms:invalidate"

Count = Callable[[str, str], None]  # (result: hit_l1, hit_l2, miss, fallback), namespace kind


class Tiered:
    def __init__(
        self,
        l2: Cache,
        *,
        size: int = 10_000,
        version_ttl: float = 5.0,
        count: Count = lambda result, kind: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.l2 = l2
        self.size = size
        #: How long a worker trusts its copy of a namespace's version without a message (a lost
        #: pub/sub message delays an invalidation by at most this).
        self.version_ttl = version_ttl
        self.count = count
        self.clock = clock
        self._values: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._versions: dict[str, tuple[int, float]] = {}
        self._loading: dict[str, asyncio.Future[bytes | None]] = {}

    # -- versions ------------------------------------------------------------------------------

    async def _version(self, namespace: str) -> int:
        known = self._versions.get(namespace)
        if known is not None and known[1] > self.clock():
            return known[0]
        raw = await self.l2.get(f"v1:ns:{namespace}")
        version = 0 if raw is None else int(raw)
        self._versions[namespace] = (version, self.clock() + self.version_ttl)
        return version

    async def invalidate(self, namespace: str) -> None:
        """Everything cached under ``namespace`` is stale, in every worker."""
        self._versions.pop(namespace, None)
        await self.l2.incr(f"v1:ns:{namespace}")
        if isinstance(self.l2, RedisCache):
            await self.l2.client.publish(self.l2.prefix + CHANNEL, namespace)

    def forget(self, namespace: str) -> None:
        """Another worker bumped ``namespace``: ask L2 for its version next time."""
        self._versions.pop(namespace, None)

    async def listen(self) -> None:
        """Follow other workers' invalidations until cancelled (Redis only)."""
        if not isinstance(self.l2, RedisCache):
            return
        while True:
            try:
                pubsub = self.l2.client.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(self.l2.prefix + CHANNEL)
                self._versions.clear()  # messages sent while nobody listened are lost
                try:
                    async for message in pubsub.listen():
                        data = message.get("data")
                        name = data.decode() if isinstance(data, bytes) else str(data)
                        self.forget(name)
                finally:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()  # type: ignore[no-untyped-call]
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("cache invalidations interrupted (%s)", type(error).__name__)
                self._versions.clear()
                await asyncio.sleep(1.0)

    # -- values --------------------------------------------------------------------------------

    async def get_or_load(
        self,
        namespace: str,
        key: str,
        load: Callable[[], Awaitable[bytes | None]],
        *,
        ttl: float,
        kind: str,
    ) -> bytes | None:
        """The value of ``key`` in ``namespace``: from L1, else L2, else ``load()`` (once per
        worker at a time), kept in both for ``ttl`` seconds. None values are not kept."""
        try:
            full = f"{namespace}:v{await self._version(namespace)}:{key}"
        except Exception:
            self.count("fallback", kind)
            return await load()
        held = self._values.get(full)
        if held is not None and held[1] > self.clock():
            self._values.move_to_end(full)
            self.count("hit_l1", kind)
            return held[0]
        pending = self._loading.get(full)
        if pending is not None:
            self.count("hit_l1", kind)  # shared with the load in flight
            return await asyncio.shield(pending)
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._loading[full] = future
        try:
            value = await self._from_l2_or_source(full, load, ttl, kind)
        except BaseException as error:
            if isinstance(error, Exception):
                future.set_exception(error)
                future.exception()  # retrieved: the waiters get it raised
            else:
                future.cancel()
            raise
        finally:
            self._loading.pop(full, None)
        future.set_result(value)
        if value is not None:
            self._keep(full, value, ttl)
        return value

    async def _from_l2_or_source(
        self, full: str, load: Callable[[], Awaitable[bytes | None]], ttl: float, kind: str
    ) -> bytes | None:
        try:
            value = await self.l2.get(full)
        except Exception:
            self.count("fallback", kind)
            return await load()
        if value is not None:
            self.count("hit_l2", kind)
            return value
        self.count("miss", kind)
        value = await load()
        if value is not None:
            try:
                await self.l2.set(full, value, ttl=ttl)
            except Exception:
                self.count("fallback", kind)
        return value

    def _keep(self, full: str, value: bytes, ttl: float) -> None:
        self._values[full] = (value, self.clock() + ttl)
        self._values.move_to_end(full)
        while len(self._values) > self.size:
            self._values.popitem(last=False)
