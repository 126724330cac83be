"""Keyset pagination in SQL: a page is "rows after (or before) this sort key, first N + 1".

Sort keys always end with ``id`` so they are unique, and every column of a key sorts in the same
direction, so a single row-value comparison ``(k1, id) > (:k1, :id)`` selects the rest of the
set and an index on ``(hospital_id, k1, id)`` serves it. ``hasNextPage`` comes from the extra
row, never from a count. Per-parent pages (a patient's appointments) run as one ``LATERAL`` join
over all parent ids, so a nested connection costs one statement whatever the page size.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    bindparam,
    func,
    literal,
    select,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.sql.elements import KeyedColumnElement

from hms.persistence.database import RequestDb


@dataclasses.dataclass(frozen=True)
class SortKey:
    """Columns of a keyset order (the last one is the table's ``id``) and one direction."""

    columns: tuple[KeyedColumnElement[Any], ...]
    descending: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.key for c in self.columns)


@dataclasses.dataclass(frozen=True)
class PageSpec:
    """What the client asked for, already validated: ``limit`` rows after/before a key."""

    limit: int
    after: tuple[Any, ...] | None = None
    before: tuple[Any, ...] | None = None
    backward: bool = False  # ``last``: take the rows nearest ``before`` (or the end)


@dataclasses.dataclass(frozen=True)
class PageRows:
    rows: list[Any]
    has_next: bool
    has_previous: bool


def _after(key: SortKey, values: tuple[Any, ...]) -> ColumnElement[bool]:
    row = tuple_(*key.columns)
    bound = tuple_(*(literal(v, type_=c.type) for c, v in zip(key.columns, values, strict=True)))
    return row < bound if key.descending else row > bound


def _before(key: SortKey, values: tuple[Any, ...]) -> ColumnElement[bool]:
    row = tuple_(*key.columns)
    bound = tuple_(*(literal(v, type_=c.type) for c, v in zip(key.columns, values, strict=True)))
    return row > bound if key.descending else row < bound


def _ordered(stmt: Select[Any], key: SortKey, *, reverse: bool) -> Select[Any]:
    descending = key.descending != reverse
    return stmt.order_by(*(c.desc() if descending else c.asc() for c in key.columns))


def keyset(stmt: Select[Any], key: SortKey, page: PageSpec) -> Select[Any]:
    """Restrict ``stmt`` to one page plus one look-ahead row, in fetch order."""
    if page.after is not None:
        stmt = stmt.where(_after(key, page.after))
    if page.before is not None:
        stmt = stmt.where(_before(key, page.before))
    return _ordered(stmt, key, reverse=page.backward).limit(page.limit + 1)


def cut(rows: Sequence[Any], page: PageSpec) -> PageRows:
    """Turn fetched rows (with the look-ahead row) into a page in display order."""
    extra = len(rows) > page.limit
    kept = list(rows[: page.limit])
    if page.backward:
        kept.reverse()
        return PageRows(kept, has_next=page.before is not None, has_previous=extra)
    return PageRows(kept, has_next=extra, has_previous=page.after is not None)


async def fetch_page(db: RequestDb, stmt: Select[Any], key: SortKey, page: PageSpec) -> PageRows:
    return cut(await db.all(keyset(stmt, key, page)), page)


async def fetch_pages_by_parent(
    db: RequestDb,
    stmt: Select[Any],
    parent_column: KeyedColumnElement[Any],
    parent_ids: Sequence[uuid.UUID],
    key: SortKey,
    page: PageSpec,
) -> dict[uuid.UUID, PageRows]:
    """One page per parent id in ONE statement: ``unnest(ids) CROSS JOIN LATERAL (… LIMIT n+1)``.

    ``stmt`` selects the child columns (including ``parent_column``) with the tenant and filter
    conditions already applied; the parent condition is added here.
    """
    parents = (
        func.unnest(
            bindparam("parent_ids", value=list(parent_ids), type_=ARRAY(UUID(as_uuid=True)))
        )
        .table_valued("id")
        .render_derived(name="parent")
    )
    inner = keyset(stmt.where(parent_column == parents.c.id), key, page).lateral("child")
    joined = select(inner).select_from(parents).join(inner, true())
    grouped: dict[uuid.UUID, list[Any]] = {pid: [] for pid in parent_ids}
    for row in await db.all(joined):
        grouped[getattr(row, parent_column.key)].append(row)
    return {pid: cut(rows, page) for pid, rows in grouped.items()}


async def count_by_parent(
    db: RequestDb,
    stmt: Select[Any],
    parent_column: KeyedColumnElement[Any],
    parent_ids: Sequence[uuid.UUID],
) -> dict[uuid.UUID, int]:
    """``totalCount`` of a nested connection for many parents in one grouped statement."""
    counted = (
        stmt.with_only_columns(parent_column, func.count().label("n"))
        .where(parent_column.in_(list(parent_ids)))
        .group_by(parent_column)
    )
    counts = dict.fromkeys(parent_ids, 0)
    for row in await db.all(counted):
        counts[getattr(row, parent_column.key)] = row.n
    return counts


async def count(db: RequestDb, stmt: Select[Any]) -> int:
    counted = select(func.count()).select_from(stmt.order_by(None).subquery())
    return int(await db.scalar(counted) or 0)
