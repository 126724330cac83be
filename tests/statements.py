"""Count the SQL statements the app sends: SQLAlchemy's cursor events, and the compiled reads
that go to asyncpg directly (``hms.persistence.database.OBSERVERS``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from hms.persistence.database import OBSERVERS


@contextlib.contextmanager
def recorded(engine: AsyncEngine) -> Iterator[list[str]]:
    """Yield a list that fills with every data statement; the per-transaction tenant bind
    (``set_config``) is left out, since it is per request, not per level."""
    statements: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "set_config('role'" not in statement:
            statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    raw = OBSERVERS.setdefault(engine, [])
    raw.append(statements.append)
    try:
        yield statements
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", before)
        raw.remove(statements.append)
