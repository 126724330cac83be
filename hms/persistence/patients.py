"""SQL for patients: by id, by MRN, keyset lists, and the stats card in one aggregate."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, Select, func, select

from hms.models.tables import patient
from hms.persistence.database import RequestDb
from hms.persistence.filters import PatientFilter, name_prefix
from hms.persistence.pages import PageRows, PageSpec, SortKey, count, fetch_page

COLUMNS = (
    patient.c.id,
    patient.c.mrn,
    patient.c.given_name,
    patient.c.family_name,
    patient.c.birth_date,
    patient.c.gender,
    patient.c.phone,
    patient.c.email,
    patient.c.active,
    patient.c.deceased_at,
    patient.c.created_at,
    patient.c.updated_at,
    patient.c.version,
)

SORT_KEYS: dict[str, tuple[Any, ...]] = {
    "name": (patient.c.family_name, patient.c.given_name, patient.c.id),
    "created_at": (patient.c.created_at, patient.c.id),
}


def sort_key(field: str, *, descending: bool) -> SortKey:
    return SortKey(SORT_KEYS[field], descending=descending)


def _scoped(db: RequestDb) -> Select[Any]:
    # The app scopes by tenant explicitly; RLS enforces the same condition underneath.
    return select(*COLUMNS).where(patient.c.hospital_id == db.hospital_id)


def _filtered(db: RequestDb, f: PatientFilter | None) -> Select[Any]:
    stmt = _scoped(db)
    if f is None:
        return stmt
    if f.active is not None:
        stmt = stmt.where(patient.c.active.is_(f.active))
    if f.name_prefix:
        stmt = stmt.where(name_prefix(f.name_prefix, patient.c.family_name, patient.c.given_name))
    if f.created_from is not None:
        stmt = stmt.where(patient.c.created_at >= f.created_from)
    if f.created_to is not None:
        stmt = stmt.where(patient.c.created_at < f.created_to)
    if f.gender is not None:
        stmt = stmt.where(patient.c.gender == f.gender)
    return stmt


async def by_ids(db: RequestDb, ids: Sequence[uuid.UUID]) -> list[Row[Any]]:
    return await db.all(_scoped(db).where(patient.c.id.in_(list(ids))))


async def by_mrns(db: RequestDb, mrns: Sequence[str]) -> list[Row[Any]]:
    return await db.all(_scoped(db).where(patient.c.mrn.in_(list(mrns))))


async def page(db: RequestDb, f: PatientFilter | None, key: SortKey, spec: PageSpec) -> PageRows:
    return await fetch_page(db, _filtered(db, f), key, spec)


async def total(db: RequestDb, f: PatientFilter | None) -> int:
    return await count(db, _filtered(db, f))


async def stats(db: RequestDb, now: dt.datetime) -> Row[Any]:
    """total, active and new-in-the-last-30-days in ONE aggregate statement."""
    since = now - dt.timedelta(days=30)
    stmt = select(
        func.count().label("total"),
        func.count().filter(patient.c.active).label("active"),
        func.count().filter(patient.c.created_at >= since).label("new_last_30_days"),
    ).where(patient.c.hospital_id == db.hospital_id)
    row = await db.one_or_none(stmt)
    assert row is not None  # an aggregate without GROUP BY always yields one row
    return row
