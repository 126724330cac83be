"""SQL for hospitals (tenants)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, bindparam, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from hms.models.ids import uuid7
from hms.models.tables import hospital
from hms.persistence.database import RequestDb
from hms.persistence.queries import HOSPITAL, keys_in

COLUMNS = (hospital.c.id, hospital.c.slug, hospital.c.name, hospital.c.timezone)


# The hospital table's policy shows a request its own hospital only; no tenant condition needed.
BY_IDS = select(*COLUMNS).where(keys_in(hospital.c.id, "keys"))
VISIBLE = select(hospital.c.id).where(hospital.c.id == bindparam(HOSPITAL)).limit(1)


async def by_ids(db: RequestDb, ids: Sequence[uuid.UUID]) -> list[Row[Any]]:
    return await db.all(BY_IDS, {"keys": list(ids)})


async def all_as_owner(engine: AsyncEngine) -> list[Any]:
    """Every hospital, read with the engine's own (owner) role: for the CLI and start-up only."""
    async with engine.connect() as conn:
        result = await conn.execute(select(*COLUMNS).order_by(hospital.c.slug))
        return list(result.all())


async def visible(db: RequestDb) -> bool:
    """Whether the request's own hospital exists (row-level security shows no other)."""
    found = await db.scalar(VISIBLE, {HOSPITAL: db.hospital_id})
    return found is not None


async def create_as_owner(engine: AsyncEngine, slug: str, name: str, timezone: str) -> Any:
    """A new hospital (the owner's role: CLI only); None if the slug is taken."""
    statement = (
        insert(hospital)
        .values(id=uuid7(), slug=slug, name=name, timezone=timezone)
        .on_conflict_do_nothing(index_elements=[hospital.c.slug])
        .returning(*COLUMNS)
    )
    async with engine.begin() as conn:
        return (await conn.execute(statement)).first()
