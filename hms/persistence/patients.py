"""SQL for patients: by id, by MRN, keyset lists, and the stats card in one aggregate."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, bindparam, func, select

from hms.models.tables import patient
from hms.persistence.database import RequestDb
from hms.persistence.filters import PatientFilter
from hms.persistence.pages import PageRows, PageSpec, SortKey, count, fetch_page
from hms.persistence.queries import HOSPITAL, Filtered, Query, eq, gte, lt, prefix

COLUMNS = (
    patient.c.id,
    patient.c.mrn,
    patient.c.given_name,
    patient.c.family_name,
    patient.c.birth_date,
    patient.c.gender,
    patient.c.phone,
    patient.c.email,
    patient.c.national_id_last4,
    patient.c.active,
    patient.c.confidential,
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


PATIENTS = Filtered(
    patient,
    COLUMNS,
    {
        "active": eq("active"),
        "name_prefix": prefix("family_name", "given_name"),
        "created_from": gte("created_at"),
        "created_to": lt("created_at"),
        "gender": eq("gender"),
    },
)


def _filtered(db: RequestDb, f: PatientFilter | None) -> Query:
    return PATIENTS.query(db.hospital_id, f)


async def by_ids(db: RequestDb, ids: Sequence[uuid.UUID]) -> list[Row[Any]]:
    return await db.all(PATIENTS.by("id"), {HOSPITAL: db.hospital_id, "keys": list(ids)})


async def by_mrns(db: RequestDb, mrns: Sequence[str]) -> list[Row[Any]]:
    return await db.all(PATIENTS.by("mrn"), {HOSPITAL: db.hospital_id, "keys": list(mrns)})


async def page(db: RequestDb, f: PatientFilter | None, key: SortKey, spec: PageSpec) -> PageRows:
    return await fetch_page(db, _filtered(db, f), key, spec)


async def total(db: RequestDb, f: PatientFilter | None) -> int:
    return await count(db, _filtered(db, f))


STATS = select(
    func.count().label("total"),
    func.count().filter(patient.c.active).label("active"),
    func.count().filter(patient.c.created_at >= bindparam("since")).label("new_last_30_days"),
).where(patient.c.hospital_id == bindparam(HOSPITAL))


async def stats(db: RequestDb, now: dt.datetime) -> Row[Any]:
    """total, active and new-in-the-last-30-days in ONE aggregate statement."""
    since = now - dt.timedelta(days=30)
    row = await db.one_or_none(STATS, {HOSPITAL: db.hospital_id, "since": since})
    assert row is not None  # an aggregate without GROUP BY always yields one row
    return row
