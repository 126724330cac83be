"""Count the SQL statements the app sends: SQLAlchemy's cursor events, and the compiled reads
that go to asyncpg directly (``hms.persistence.database.OBSERVERS``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from hms.persistence.database import OBSERVERS

AUDIT = "INSERT INTO audit_event"


@contextlib.contextmanager
def recorded(engine: AsyncEngine) -> Iterator[list[str]]:
    """Yield a list that fills with every data statement; the per-transaction tenant bind
    (``set_config``) and the audit append are left out, since they are per request, not per
    level (tests/api/test_audit.py counts them)."""
    statements: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "set_config('role'" not in statement and not statement.startswith(AUDIT):
            statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", before)

    def observed(statement: str) -> None:
        if not statement.startswith(AUDIT):
            statements.append(statement)

    raw = OBSERVERS.setdefault(engine, [])
    raw.append(observed)
    try:
        yield statements
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", before)
        raw.remove(observed)
