"""SQL for practitioners: by id and keyset lists by name."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, Select, select

from hms.models.tables import practitioner
from hms.persistence.database import RequestDb
from hms.persistence.filters import PractitionerFilter, name_prefix
from hms.persistence.pages import PageRows, PageSpec, SortKey, count, fetch_page

COLUMNS = (
    practitioner.c.id,
    practitioner.c.given_name,
    practitioner.c.family_name,
    practitioner.c.specialty,
    practitioner.c.active,
)

KEY = SortKey((practitioner.c.family_name, practitioner.c.given_name, practitioner.c.id))


def _scoped(db: RequestDb) -> Select[Any]:
    return select(*COLUMNS).where(practitioner.c.hospital_id == db.hospital_id)


def _filtered(db: RequestDb, f: PractitionerFilter | None) -> Select[Any]:
    stmt = _scoped(db)
    if f is None:
        return stmt
    if f.active is not None:
        stmt = stmt.where(practitioner.c.active.is_(f.active))
    if f.specialty is not None:
        stmt = stmt.where(practitioner.c.specialty == f.specialty)
    if f.name_prefix:
        stmt = stmt.where(
            name_prefix(f.name_prefix, practitioner.c.family_name, practitioner.c.given_name)
        )
    return stmt


async def by_ids(db: RequestDb, ids: Sequence[uuid.UUID]) -> list[Row[Any]]:
    return await db.all(_scoped(db).where(practitioner.c.id.in_(list(ids))))


async def page(db: RequestDb, f: PractitionerFilter | None, spec: PageSpec) -> PageRows:
    return await fetch_page(db, _filtered(db, f), KEY, spec)


async def total(db: RequestDb, f: PractitionerFilter | None) -> int:
    return await count(db, _filtered(db, f))
