"""Encounter writes: record one encounter. Never commits."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import Row, insert

from hms.models.ids import uuid7
from hms.models.tables import encounter
from hms.persistence.database import RequestDb
from hms.persistence.encounters import COLUMNS
from hms.persistence.errors import returning_one

REFERENCES = {
    "fk_encounter_hospital_id_patient_id_patient": "patient",
    "fk_encounter_hospital_id_practitioner_id_practitioner": "practitioner",
    "fk_encounter_hospital_id_appointment_id_appointment": "appointment",
}


async def create(
    db: RequestDb,
    *,
    patient_id: uuid.UUID,
    practitioner_id: uuid.UUID | None,
    appointment_id: uuid.UUID | None,
    status: str,
    class_: str,
    period_start: dt.datetime,
    period_end: dt.datetime | None,
    reason: str | None,
) -> Row[Any]:
    """Insert; a patient, practitioner or appointment outside this hospital is :class:`NotFound`."""
    stmt = (
        insert(encounter)
        .values(
            hospital_id=db.hospital_id,
            id=uuid7(),
            patient_id=patient_id,
            practitioner_id=practitioner_id,
            appointment_id=appointment_id,
            status=status,
            class_=class_,
            period_start=period_start,
            period_end=period_end,
            reason=reason,
        )
        .returning(*COLUMNS)
    )
    row = await returning_one(db, stmt, REFERENCES)
    assert row is not None  # INSERT … RETURNING yields its row or raises
    return row
