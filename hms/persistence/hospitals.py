"""SQL for hospitals (tenants)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncEngine

from hms.models.tables import hospital
from hms.persistence.database import RequestDb

COLUMNS = (hospital.c.id, hospital.c.slug, hospital.c.name, hospital.c.timezone)


async def by_ids(db: RequestDb, ids: Sequence[uuid.UUID]) -> list[Row[Any]]:
    return await db.all(select(*COLUMNS).where(hospital.c.id.in_(list(ids))))


async def all_as_owner(engine: AsyncEngine) -> list[Any]:
    """Every hospital, read with the engine's own (owner) role: for the CLI and start-up only."""
    async with engine.connect() as conn:
        result = await conn.execute(select(*COLUMNS).order_by(hospital.c.slug))
        return list(result.all())


async def visible(db: RequestDb) -> bool:
    """Whether the request's own hospital exists (row-level security shows no other)."""
    found = await db.scalar(select(hospital.c.id).where(hospital.c.id == db.hospital_id).limit(1))
    return found is not None
