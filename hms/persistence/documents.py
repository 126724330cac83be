"""SQL for the persisted-document registry (trusted documents).

The app reads it through a request database (the app role may SELECT); the ``hms documents``
commands write it with the connection's own (owner) role. It is not tenant data: one registry
serves every hospital.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, func, literal_column, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from hms.models.tables import persisted_document
from hms.persistence.database import RequestDb

ACTIVE_BODY = select(persisted_document.c.body).where(
    persisted_document.c.id == bindparam("id"), persisted_document.c.retired_at.is_(None)
)


@dataclasses.dataclass(frozen=True)
class Entry:
    """One document of a manifest, already hashed and validated."""

    id: str
    body: str
    operation_name: str | None
    operation_type: str


async def active_body(db: RequestDb, document_id: str) -> str | None:
    """The body of a registered, not retired document, or None."""
    body = await db.scalar(ACTIVE_BODY, {"id": document_id})
    return None if body is None else str(body)


async def push(
    engine: AsyncEngine, entries: Sequence[Entry], client: str | None, version: str | None
) -> int:
    """Register ``entries`` (all or none); a retired document pushed again is active again.

    Returns how many were not registered before.
    """
    table = persisted_document
    clients = [client] if client else []
    versions = [version] if version else []
    async with engine.begin() as conn:
        new = 0
        for entry in entries:
            stmt = insert(table).values(
                id=entry.id,
                body=entry.body,
                operation_name=entry.operation_name,
                operation_type=entry.operation_type,
                client_names=clients,
                app_versions=versions,
            )
            merged = stmt.on_conflict_do_update(
                index_elements=[table.c.id],
                set_={
                    # The union of the lists, each name once.
                    "client_names": literal_column(
                        "ARRAY(SELECT DISTINCT unnest("
                        "persisted_document.client_names || excluded.client_names))"
                    ),
                    "app_versions": literal_column(
                        "ARRAY(SELECT DISTINCT unnest("
                        "persisted_document.app_versions || excluded.app_versions))"
                    ),
                    "retired_at": None,
                },
            ).returning(table.c.created_at, func.now().label("now"))
            row = (await conn.execute(merged)).one()
            new += row.created_at == row.now  # created in this transaction
        return new


async def listed(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        result = await conn.execute(
            select(persisted_document).order_by(persisted_document.c.created_at)
        )
        return list(result.all())


async def retire(engine: AsyncEngine, document_id: str, when: dt.datetime) -> bool:
    async with engine.begin() as conn:
        result = await conn.execute(
            update(persisted_document)
            .where(
                persisted_document.c.id == document_id, persisted_document.c.retired_at.is_(None)
            )
            .values(retired_at=when)
            .returning(persisted_document.c.id)
        )
        return result.first() is not None
