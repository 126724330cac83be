"""DataLoader shapes shared by every slice.

A batch returns exactly one result per key, in key order (``None`` for a miss). Page and count
loaders take ``(parent_id, args)`` keys and run one statement per distinct ``args`` in a batch,
so a nested connection costs one statement per level however many parents it has.

Batches run as tasks of their own, after the resolvers that asked for them, so a request can
finish executing while one is still queued or running (a sibling resolver raised). Every loader
of a request reports the futures it hands out to one :class:`Outstanding`, and the request
waits for them to settle before its transaction ends.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

from aiodataloader import DataLoader
from opentelemetry import trace

from hms.persistence.database import RequestDb
from hms.persistence.pages import PageRows, PageSpec

TRACER = trace.get_tracer("hms")

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
F = TypeVar("F", bound=Hashable)

RowsByKey = Callable[[RequestDb, Sequence[Any]], Awaitable[list[Any]]]
PagesByParent = Callable[
    [RequestDb, Sequence[uuid.UUID], Any, PageSpec], Awaitable[dict[uuid.UUID, PageRows]]
]
CountsByParent = Callable[[RequestDb, Sequence[uuid.UUID], Any], Awaitable[dict[uuid.UUID, int]]]


class Outstanding:
    """The loads of one request that have not settled yet."""

    def __init__(self) -> None:
        self._futures: set[asyncio.Future[Any]] = set()
        #: ``(loader, keys)`` of every batch run, for metrics.
        self.batches: list[tuple[str, int]] = []

    def add(self, future: asyncio.Future[Any]) -> None:
        if not future.done() and future not in self._futures:
            self._futures.add(future)
            future.add_done_callback(self._settled)

    def _settled(self, future: asyncio.Future[Any]) -> None:
        self._futures.discard(future)
        if not future.cancelled():
            # Mark the outcome as seen: a load whose resolver was abandoned must not surface
            # later as "exception was never retrieved" in the logs.
            future.exception()

    def __len__(self) -> int:
        return len(self._futures)

    async def settle(self) -> None:
        """Wait until every load handed out so far has its result (or error)."""
        while self._futures:
            await asyncio.wait(tuple(self._futures))


class TrackedLoader(DataLoader[K, V], Generic[K, V]):
    """A DataLoader on one request's database whose loads are tracked until they settle."""

    def __init__(self, db: RequestDb, outstanding: Outstanding) -> None:
        super().__init__(loop=asyncio.get_running_loop())
        self.db = db
        self.outstanding = outstanding

    def load(self, key: K) -> asyncio.Future[V]:
        future = super().load(key)
        self.outstanding.add(future)
        return future

    def batched(self, fetch: Callable[..., Any], keys: Sequence[Any]) -> Any:
        """Record a batch of ``keys`` for ``fetch`` (named ``module.function``) and trace it:
        the span to run the batch in."""
        name = f"{fetch.__module__.rsplit('.', 1)[-1]}.{fetch.__name__}"
        self.outstanding.batches.append((name, len(keys)))
        return TRACER.start_as_current_span(
            f"dataloader {name}",
            attributes={"hms.loader.keys": len(keys)},
            record_exception=False,  # an exception's message can quote patient data
        )


class RowByKeyLoader(TrackedLoader[K, Any], Generic[K]):
    """Rows looked up by a unique column (``id``, ``mrn``); a miss (or a foreign row) is None."""

    def __init__(
        self, db: RequestDb, outstanding: Outstanding, fetch: RowsByKey, attribute: str = "id"
    ) -> None:
        super().__init__(db, outstanding)
        self.fetch = fetch
        self.attribute = attribute

    async def batch_load_fn(self, keys: list[K]) -> list[Any]:
        with self.batched(self.fetch, keys):
            rows = await self.fetch(self.db, keys)
        found = {getattr(row, self.attribute): row for row in rows}
        return [found.get(key) for key in keys]


class PageByParentLoader(TrackedLoader[tuple[uuid.UUID, F, PageSpec], PageRows], Generic[F]):
    """One page of children per ``(parent_id, filter, page)`` key."""

    def __init__(self, db: RequestDb, outstanding: Outstanding, fetch: PagesByParent) -> None:
        super().__init__(db, outstanding)
        self.fetch = fetch

    async def batch_load_fn(self, keys: list[tuple[uuid.UUID, F, PageSpec]]) -> list[PageRows]:
        groups: dict[tuple[F, PageSpec], list[uuid.UUID]] = {}
        for parent_id, filter_, spec in keys:
            groups.setdefault((filter_, spec), []).append(parent_id)
        results: dict[tuple[uuid.UUID, F, PageSpec], PageRows] = {}
        with self.batched(self.fetch, keys):
            for (filter_, spec), parent_ids in groups.items():
                pages = await self.fetch(self.db, parent_ids, filter_, spec)
                for parent_id in parent_ids:
                    results[(parent_id, filter_, spec)] = pages[parent_id]
        return [results[key] for key in keys]


class CountByParentLoader(TrackedLoader[tuple[uuid.UUID, F], int], Generic[F]):
    """``totalCount`` of children per ``(parent_id, filter)`` key."""

    def __init__(self, db: RequestDb, outstanding: Outstanding, fetch: CountsByParent) -> None:
        super().__init__(db, outstanding)
        self.fetch = fetch

    async def batch_load_fn(self, keys: list[tuple[uuid.UUID, F]]) -> list[int]:
        groups: dict[F, list[uuid.UUID]] = {}
        for parent_id, filter_ in keys:
            groups.setdefault(filter_, []).append(parent_id)
        results: dict[tuple[uuid.UUID, F], int] = {}
        with self.batched(self.fetch, keys):
            for filter_, parent_ids in groups.items():
                counts = await self.fetch(self.db, parent_ids, filter_)
                for parent_id in parent_ids:
                    results[(parent_id, filter_)] = counts[parent_id]
        return [results[key] for key in keys]
