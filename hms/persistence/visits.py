"""SQL for patients' visit summaries: read by patient, never written here.

The clinical job writes ``patient_visit_summary`` (:func:`hms.persistence.jobs.summarise_visits`)
after each finished encounter; a request only reads it. A patient with no row yet has no
finished encounter the job has processed.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, bindparam, select

from hms.models.tables import patient_visit_summary
from hms.persistence.database import RequestDb
from hms.persistence.queries import HOSPITAL, keys_in

COLUMNS = (
    patient_visit_summary.c.patient_id,
    patient_visit_summary.c.finished_encounters,
    patient_visit_summary.c.first_visit_at,
    patient_visit_summary.c.last_visit_at,
    patient_visit_summary.c.total_minutes,
    patient_visit_summary.c.updated_at,
)

BY_PATIENT_IDS = select(*COLUMNS).where(
    patient_visit_summary.c.hospital_id == bindparam(HOSPITAL),
    keys_in(patient_visit_summary.c.patient_id, "keys"),
)


async def by_patient_ids(db: RequestDb, patient_ids: Sequence[uuid.UUID]) -> list[Row[Any]]:
    """The summaries of these patients in the request's hospital, one statement for all (a
    patient without one has no row)."""
    return await db.all(BY_PATIENT_IDS, {HOSPITAL: db.hospital_id, "keys": list(patient_ids)})
