"""Keyset pagination in SQL: a page is "rows after (or before) this row, first N + 1".

Sort keys always end with ``id`` so they are unique, and every column of a key sorts in the same
direction, so a single row-value comparison ``(k1, id) > (SELECT k1, id FROM … WHERE id = :anchor)``
selects the rest of the set and an index on ``(hospital_id, k1, id)`` serves it (the sub-select
runs once, as an InitPlan). A page is anchored by the *id* of a row, not its values: the anchor
row is read under row-level security, so a row of another hospital (or no row) anchors nothing,
and :class:`UnknownAnchor` says so when the page comes back empty. ``hasNextPage`` comes from the
extra row, never from a count. Per-parent pages (a patient's appointments) run as one
``LATERAL`` join over all parent ids, so a nested connection costs one statement whatever the
page size.
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    Table,
    bindparam,
    func,
    select,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.sql.elements import KeyedColumnElement
from sqlalchemy.sql.selectable import ScalarSelect

from hms.persistence.database import RequestDb
from hms.persistence.queries import HOSPITAL, Query, keys_in


@dataclasses.dataclass(frozen=True)
class SortKey:
    """Columns of a keyset order (the last one is the table's ``id``) and one direction."""

    columns: tuple[KeyedColumnElement[Any], ...]
    descending: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.key for c in self.columns)

    @property
    def table(self) -> Table:
        table = self.columns[-1].table
        assert isinstance(table, Table)
        return table


@dataclasses.dataclass(frozen=True)
class PageSpec:
    """What the client asked for, already validated: ``limit`` rows after/before a key."""

    limit: int
    after: uuid.UUID | None = None  # the id of the row the page starts after
    before: uuid.UUID | None = None
    backward: bool = False  # ``last``: take the rows nearest ``before`` (or the end)


@dataclasses.dataclass(frozen=True)
class PageRows:
    rows: list[Any]
    has_next: bool
    has_previous: bool


class UnknownAnchor(LookupError):
    """A page was anchored (``after``/``before``) on a row this hospital cannot see."""

    def __init__(self, argument: str) -> None:
        super().__init__(f"no visible row anchors '{argument}'")
        self.argument = argument


def _anchor(key: SortKey, name: str) -> ScalarSelect[Any]:
    """The sort key of the row ``:name`` as a row value (NULL, matching nothing, when not
    visible)."""
    anchor = key.table.alias(f"{name}_row")
    return (
        select(*(anchor.c[column.key] for column in key.columns))
        .where(anchor.c.hospital_id == bindparam(HOSPITAL), anchor.c.id == bindparam(name))
        .scalar_subquery()
    )


def _beyond(key: SortKey, anchor: ScalarSelect[Any], *, forward: bool) -> ColumnElement[bool]:
    row = tuple_(*key.columns)
    return row > anchor if forward != key.descending else row < anchor


def _ordered(stmt: Select[Any], key: SortKey, *, reverse: bool) -> Select[Any]:
    descending = key.descending != reverse
    return stmt.order_by(*(c.desc() if descending else c.asc() for c in key.columns))


def keyset(
    stmt: Select[Any], key: SortKey, after: bool, before: bool, backward: bool
) -> Select[Any]:
    """Restrict ``stmt`` to one page plus one look-ahead row, in fetch order.

    Binds ``:after_id``/``:before_id`` (when anchored) and ``:limit`` (the page size + 1).
    """
    if after:
        stmt = stmt.where(_beyond(key, _anchor(key, "after_id"), forward=True))
    if before:
        stmt = stmt.where(_beyond(key, _anchor(key, "before_id"), forward=False))
    return _ordered(stmt, key, reverse=backward).limit(bindparam("limit", type_=Integer))


_page = functools.cache(keyset)


def _page_params(query: Query, page: PageSpec) -> dict[str, Any]:
    params = {**query.params, "limit": page.limit + 1}
    if page.after is not None:
        params["after_id"] = page.after
    if page.before is not None:
        params["before_id"] = page.before
    return params


def _shape(page: PageSpec) -> tuple[bool, bool, bool]:
    return page.after is not None, page.before is not None, page.backward


@functools.cache
def _anchor_visible(table: Table) -> Select[Any]:
    return select(table.c.id).where(
        table.c.hospital_id == bindparam(HOSPITAL), table.c.id == bindparam("anchor_id")
    )


async def check_anchors(db: RequestDb, key: SortKey, page: PageSpec) -> None:
    """Raise :class:`UnknownAnchor` for an anchor row this request cannot see.

    Run only when an anchored page came back empty: that is the one case in which a foreign
    or made-up anchor and a real end of the list look alike.
    """
    for argument, anchor_id in (("after", page.after), ("before", page.before)):
        if anchor_id is None:
            continue
        found = await db.scalar(
            _anchor_visible(key.table), {HOSPITAL: db.hospital_id, "anchor_id": anchor_id}
        )
        if found is None:
            raise UnknownAnchor(argument)


def cut(rows: Sequence[Any], page: PageSpec) -> PageRows:
    """Turn fetched rows (with the look-ahead row) into a page in display order."""
    extra = len(rows) > page.limit
    kept = list(rows[: page.limit])
    if page.backward:
        kept.reverse()
        return PageRows(kept, has_next=page.before is not None, has_previous=extra)
    return PageRows(kept, has_next=extra, has_previous=page.after is not None)


async def fetch_page(db: RequestDb, query: Query, key: SortKey, page: PageSpec) -> PageRows:
    rows = await db.all(_page(query.stmt, key, *_shape(page)), _page_params(query, page))
    if not rows:
        await check_anchors(db, key, page)
    return cut(rows, page)


@functools.cache
def _pages_by_parent(
    stmt: Select[Any],
    parent_column: KeyedColumnElement[Any],
    key: SortKey,
    after: bool,
    before: bool,
    backward: bool,
) -> Select[Any]:
    parents = (
        func.unnest(bindparam("parent_ids", type_=ARRAY(UUID(as_uuid=True))))
        .table_valued("id")
        .render_derived(name="parent")
    )
    inner = keyset(stmt.where(parent_column == parents.c.id), key, after, before, backward)
    child = inner.lateral("child")
    return select(child).select_from(parents).join(child, true())


async def fetch_pages_by_parent(
    db: RequestDb,
    query: Query,
    parent_column: KeyedColumnElement[Any],
    parent_ids: Sequence[uuid.UUID],
    key: SortKey,
    page: PageSpec,
) -> dict[uuid.UUID, PageRows]:
    """One page per parent id in ONE statement: ``unnest(ids) CROSS JOIN LATERAL (… LIMIT n+1)``.

    ``query`` selects the child columns (including ``parent_column``) with the tenant and filter
    conditions; the parent condition is added here.
    """
    stmt = _pages_by_parent(query.stmt, parent_column, key, *_shape(page))
    params = {**_page_params(query, page), "parent_ids": list(parent_ids)}
    grouped: dict[uuid.UUID, list[Any]] = {pid: [] for pid in parent_ids}
    rows = await db.all(stmt, params)
    if not rows:
        await check_anchors(db, key, page)
    for row in rows:
        grouped[getattr(row, parent_column.key)].append(row)
    return {pid: cut(rows, page) for pid, rows in grouped.items()}


@functools.cache
def _counts_by_parent(stmt: Select[Any], parent_column: KeyedColumnElement[Any]) -> Select[Any]:
    return (
        stmt.with_only_columns(parent_column, func.count().label("n"))
        .where(keys_in(parent_column, "parent_ids"))
        .group_by(parent_column)
    )


async def count_by_parent(
    db: RequestDb,
    query: Query,
    parent_column: KeyedColumnElement[Any],
    parent_ids: Sequence[uuid.UUID],
) -> dict[uuid.UUID, int]:
    """``totalCount`` of a nested connection for many parents in one grouped statement."""
    stmt = _counts_by_parent(query.stmt, parent_column)
    counts = dict.fromkeys(parent_ids, 0)
    for row in await db.all(stmt, {**query.params, "parent_ids": list(parent_ids)}):
        counts[getattr(row, parent_column.key)] = row.n
    return counts


@functools.cache
def _counted(stmt: Select[Any]) -> Select[Any]:
    return select(func.count()).select_from(stmt.order_by(None).subquery())


async def count(db: RequestDb, query: Query) -> int:
    return int(await db.scalar(_counted(query.stmt), query.params) or 0)
