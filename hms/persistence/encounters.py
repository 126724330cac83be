"""SQL for encounters: by id, keyset lists, and per-patient pages."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, Select, select

from hms.models.tables import encounter
from hms.persistence.database import RequestDb
from hms.persistence.filters import EncounterFilter
from hms.persistence.pages import (
    PageRows,
    PageSpec,
    SortKey,
    count,
    count_by_parent,
    fetch_page,
    fetch_pages_by_parent,
)

COLUMNS = (
    encounter.c.id,
    encounter.c.patient_id,
    encounter.c.practitioner_id,
    encounter.c.appointment_id,
    encounter.c.status,
    encounter.c.class_.label("class_"),
    encounter.c.period_start,
    encounter.c.period_end,
    encounter.c.reason,
    encounter.c.created_at,
    encounter.c.updated_at,
    encounter.c.version,
)

BY_PERIOD = (encounter.c.period_start, encounter.c.id)
#: Encounters read newest first everywhere (a chart, a ward list).
KEY = SortKey(BY_PERIOD, descending=True)


def _scoped(db: RequestDb) -> Select[Any]:
    return select(*COLUMNS).where(encounter.c.hospital_id == db.hospital_id)


def _filtered(db: RequestDb, f: EncounterFilter | None) -> Select[Any]:
    stmt = _scoped(db)
    if f is None:
        return stmt
    if f.period_from is not None:
        stmt = stmt.where(encounter.c.period_start >= f.period_from)
    if f.period_to is not None:
        stmt = stmt.where(encounter.c.period_start < f.period_to)
    if f.classes is not None:
        stmt = stmt.where(encounter.c.class_.in_(f.classes))
    if f.statuses is not None:
        stmt = stmt.where(encounter.c.status.in_(f.statuses))
    if f.patient_id is not None:
        stmt = stmt.where(encounter.c.patient_id == f.patient_id)
    if f.practitioner_id is not None:
        stmt = stmt.where(encounter.c.practitioner_id == f.practitioner_id)
    return stmt


async def by_ids(db: RequestDb, ids: Sequence[uuid.UUID]) -> list[Row[Any]]:
    return await db.all(_scoped(db).where(encounter.c.id.in_(list(ids))))


async def page(db: RequestDb, f: EncounterFilter | None, spec: PageSpec) -> PageRows:
    return await fetch_page(db, _filtered(db, f), KEY, spec)


async def total(db: RequestDb, f: EncounterFilter | None) -> int:
    return await count(db, _filtered(db, f))


async def pages_by_patient(
    db: RequestDb, patient_ids: Sequence[uuid.UUID], f: EncounterFilter | None, spec: PageSpec
) -> dict[uuid.UUID, PageRows]:
    return await fetch_pages_by_parent(
        db, _filtered(db, f), encounter.c.patient_id, patient_ids, KEY, spec
    )


async def counts_by_patient(
    db: RequestDb, patient_ids: Sequence[uuid.UUID], f: EncounterFilter | None
) -> dict[uuid.UUID, int]:
    return await count_by_parent(db, _filtered(db, f), encounter.c.patient_id, patient_ids)
