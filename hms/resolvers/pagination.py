"""Relay connection arguments → a validated :class:`PageSpec`, and the page handed to the schema."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from hms.persistence.pages import PageRows, PageSpec, UnknownAnchor
from hms.resolvers.errors import BadUserInput
from hms.resolvers.relay import CursorCodec, invalid_cursor
from hms.settings import Settings


@dataclasses.dataclass(frozen=True)
class PageArgs:
    first: int | None = None
    after: str | None = None
    last: int | None = None
    before: str | None = None


def page_spec(settings: Settings, args: PageArgs, codec: CursorCodec) -> PageSpec:
    """Validate Relay arguments. Sizes past ``max_page_size`` are an error, never a silent cap."""
    default_size, max_size = settings.default_page_size, settings.max_page_size
    if args.first is not None and args.last is not None:
        raise BadUserInput("Pass either 'first' (with 'after') or 'last' (with 'before'), not both")
    for name, value in (("first", args.first), ("last", args.last)):
        if value is not None and not 0 <= value <= max_size:
            raise BadUserInput(
                f"'{name}' must be between 0 and {max_size}, got {value}",
                argument=name,
                maximum=max_size,
            )
    after = None if args.after is None else codec.decode(args.after, "after")
    before = None if args.before is None else codec.decode(args.before, "before")
    backward = args.last is not None
    limit = args.last if backward else args.first
    return PageSpec(
        limit=default_size if limit is None else limit,
        after=after,
        before=before,
        backward=backward,
    )


def direction(descending: bool) -> str:
    return "desc" if descending else "asc"


async def anchored(rows: Awaitable[PageRows]) -> PageRows:
    """The page, or the cursor error when its ``after``/``before`` row is not visible."""
    try:
        return await rows
    except UnknownAnchor as error:
        raise invalid_cursor(error.argument) from None


@dataclasses.dataclass
class Page:
    """Rows of one connection page, how to make their cursors, and how to count the whole set."""

    rows: list[Any]
    has_next: bool
    has_previous: bool
    codec: CursorCodec
    count: Callable[[], Awaitable[int]]

    @classmethod
    def of(cls, rows: PageRows, codec: CursorCodec, count: Callable[[], Awaitable[int]]) -> Page:
        return cls(rows.rows, rows.has_next, rows.has_previous, codec, count)

    def cursor(self, row: Any) -> str:
        return self.codec.encode(row)
