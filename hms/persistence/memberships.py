"""SQL for hospital memberships: which user acts in a hospital, and with which roles."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from hms.models.tables import hospital_membership as membership
from hms.persistence.database import RequestDb

# Row-level security shows a request its own hospital's memberships only.
ROLES_OF = select(membership.c.roles).where(membership.c.subject == bindparam("subject"))


async def roles_of(db: RequestDb, subject: str) -> frozenset[str] | None:
    """The roles ``subject`` holds in the request's hospital, or None if not a member."""
    roles = await db.scalar(ROLES_OF, {"subject": subject})
    return None if roles is None else frozenset(roles)


async def put_as_owner(
    engine: AsyncEngine, hospital_id: uuid.UUID, subject: str, roles: Sequence[str]
) -> None:
    """Make ``subject`` a member with exactly ``roles`` (the owner's role: CLI only)."""
    statement = insert(membership).values(
        hospital_id=hospital_id, subject=subject, roles=sorted(set(roles))
    )
    statement = statement.on_conflict_do_update(
        index_elements=[membership.c.hospital_id, membership.c.subject],
        set_={"roles": statement.excluded.roles, "updated_at": func.now()},
    )
    async with engine.begin() as conn:
        await conn.execute(statement)


async def remove_as_owner(engine: AsyncEngine, hospital_id: uuid.UUID, subject: str) -> bool:
    async with engine.begin() as conn:
        result = await conn.execute(
            delete(membership).where(
                membership.c.hospital_id == hospital_id, membership.c.subject == subject
            )
        )
    return bool(result.rowcount)


async def all_as_owner(engine: AsyncEngine, hospital_id: uuid.UUID) -> list[Any]:
    async with engine.connect() as conn:
        result = await conn.execute(
            select(membership.c.subject, membership.c.roles, membership.c.updated_at)
            .where(membership.c.hospital_id == hospital_id)
            .order_by(membership.c.subject)
        )
        return list(result.all())
