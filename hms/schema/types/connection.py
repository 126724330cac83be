"""Relay connections: ``XConnection { edges { cursor node } pageInfo totalCount }``.

``cursor`` is signed lazily (only when selected) and ``totalCount`` runs its COUNT only when
selected; ``hasNextPage`` comes from the page's look-ahead row. Edges and nodes are built only
when selected, so a node is built exactly when the answer reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import strawberry

from hms.resolvers.pagination import Page
from hms.schema.directives import COUNT, EDGES

NodeT = TypeVar("NodeT")


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[NodeT]):
    _row: strawberry.Private[Any]
    _page: strawberry.Private[Page]
    _make: strawberry.Private[Callable[[Any], Any]]

    @strawberry.field
    def node(self) -> NodeT:
        # Built when selected: an object is a read of its patient's data (the audit event).
        node: NodeT = self._make(self._row)
        return node

    @strawberry.field
    def cursor(self) -> str:
        return self._page.cursor(self._row)


@strawberry.type
class Connection(Generic[NodeT]):
    _page: strawberry.Private[Page]
    _make: strawberry.Private[Callable[[Any], Any]]

    @strawberry.field(directives=[EDGES])
    def edges(self) -> list[Edge[NodeT]]:
        page, make = self._page, self._make
        return [Edge(_row=row, _page=page, _make=make) for row in page.rows]

    @strawberry.field
    def page_info(self) -> PageInfo:
        rows = self._page.rows
        return PageInfo(
            has_next_page=self._page.has_next,
            has_previous_page=self._page.has_previous,
            start_cursor=self._page.cursor(rows[0]) if rows else None,
            end_cursor=self._page.cursor(rows[-1]) if rows else None,
        )

    @strawberry.field(
        description="Rows matching the filter; counted only when selected.", directives=[COUNT]
    )
    async def total_count(self) -> int:
        return await self._page.count()


def connection(page: Page, make: Callable[[Any], NodeT]) -> Connection[NodeT]:
    return Connection(_page=page, _make=make)
