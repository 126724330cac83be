"""SQL for appointments: by id, keyset lists, and per-patient / per-practitioner pages."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row

from hms.models.tables import appointment
from hms.persistence.database import RequestDb
from hms.persistence.filters import AppointmentFilter
from hms.persistence.pages import (
    PageRows,
    PageSpec,
    SortKey,
    count,
    count_by_parent,
    fetch_page,
    fetch_pages_by_parent,
)
from hms.persistence.queries import HOSPITAL, Filtered, Query, eq, gte, lt, one_of

COLUMNS = (
    appointment.c.id,
    appointment.c.patient_id,
    appointment.c.practitioner_id,
    appointment.c.status,
    appointment.c.start_at,
    appointment.c.end_at,
    appointment.c.reason,
    appointment.c.cancellation_reason,
    appointment.c.confidential,
    appointment.c.created_at,
    appointment.c.updated_at,
    appointment.c.version,
)

BY_START = (appointment.c.start_at, appointment.c.id)
#: A patient's history reads newest first; a practitioner's schedule reads in time order.
PATIENT_KEY = SortKey(BY_START, descending=True)
PRACTITIONER_KEY = SortKey(BY_START, descending=False)


def sort_key(*, descending: bool) -> SortKey:
    return SortKey(BY_START, descending=descending)


APPOINTMENTS = Filtered(
    appointment,
    COLUMNS,
    {
        "start_from": gte("start_at"),
        "start_to": lt("start_at"),
        "statuses": one_of("status"),
        "practitioner_id": eq("practitioner_id"),
        "patient_id": eq("patient_id"),
    },
)


def _filtered(db: RequestDb, f: AppointmentFilter | None) -> Query:
    return APPOINTMENTS.query(db.hospital_id, f)


async def by_ids(db: RequestDb, ids: Sequence[uuid.UUID]) -> list[Row[Any]]:
    return await db.all(APPOINTMENTS.by("id"), {HOSPITAL: db.hospital_id, "keys": list(ids)})


async def page(
    db: RequestDb, f: AppointmentFilter | None, key: SortKey, spec: PageSpec
) -> PageRows:
    return await fetch_page(db, _filtered(db, f), key, spec)


async def total(db: RequestDb, f: AppointmentFilter | None) -> int:
    return await count(db, _filtered(db, f))


async def pages_by_patient(
    db: RequestDb, patient_ids: Sequence[uuid.UUID], f: AppointmentFilter | None, spec: PageSpec
) -> dict[uuid.UUID, PageRows]:
    return await fetch_pages_by_parent(
        db, _filtered(db, f), appointment.c.patient_id, patient_ids, PATIENT_KEY, spec
    )


async def pages_by_practitioner(
    db: RequestDb,
    practitioner_ids: Sequence[uuid.UUID],
    f: AppointmentFilter | None,
    spec: PageSpec,
) -> dict[uuid.UUID, PageRows]:
    return await fetch_pages_by_parent(
        db,
        _filtered(db, f),
        appointment.c.practitioner_id,
        practitioner_ids,
        PRACTITIONER_KEY,
        spec,
    )


async def counts_by_patient(
    db: RequestDb, patient_ids: Sequence[uuid.UUID], f: AppointmentFilter | None
) -> dict[uuid.UUID, int]:
    return await count_by_parent(db, _filtered(db, f), appointment.c.patient_id, patient_ids)


async def counts_by_practitioner(
    db: RequestDb, practitioner_ids: Sequence[uuid.UUID], f: AppointmentFilter | None
) -> dict[uuid.UUID, int]:
    return await count_by_parent(
        db, _filtered(db, f), appointment.c.practitioner_id, practitioner_ids
    )
