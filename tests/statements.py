"""Count the SQL statements the app sends, through SQLAlchemy's cursor events."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine


@contextlib.contextmanager
def recorded(engine: AsyncEngine) -> Iterator[list[str]]:
    """Yield a list that fills with every data statement; the per-transaction tenant bind
    (``set_config``) is left out, since it is per request, not per level."""
    statements: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "set_config('role'" not in statement:
            statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", before)
