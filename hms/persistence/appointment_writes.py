"""Appointment writes: book, move, and change status, each one atomic SQL statement.

The no-double-booking rule lives in the exclusion constraint, so two clerks racing for a slot are
decided by PostgreSQL (the loser gets :class:`SlotTaken`), never by a check-then-insert in Python.
Status changes put the allowed source statuses and the expected version in the ``WHERE`` clause;
when no row matches, one more read tells NOT_FOUND, VERSION_CONFLICT and an illegal state apart.
Never commits.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, func, insert, select, update

from hms.models.ids import uuid7
from hms.models.tables import appointment
from hms.persistence.appointments import COLUMNS
from hms.persistence.database import RequestDb
from hms.persistence.errors import IllegalState, NotFound, VersionConflict, returning_one

REFERENCES = {
    "fk_appointment_hospital_id_patient_id_patient": "patient",
    "fk_appointment_hospital_id_practitioner_id_practitioner": "practitioner",
}


async def create(
    db: RequestDb,
    *,
    patient_id: uuid.UUID,
    practitioner_id: uuid.UUID,
    status: str,
    start_at: dt.datetime,
    end_at: dt.datetime,
    reason: str | None,
) -> Row[Any]:
    """Book; raises :class:`SlotTaken`, or :class:`NotFound` for a patient or practitioner that
    is not in this hospital (the composite foreign keys decide)."""
    stmt = (
        insert(appointment)
        .values(
            hospital_id=db.hospital_id,
            id=uuid7(),
            patient_id=patient_id,
            practitioner_id=practitioner_id,
            status=status,
            start_at=start_at,
            end_at=end_at,
            reason=reason,
        )
        .returning(*COLUMNS)
    )
    row = await returning_one(db, stmt, REFERENCES)
    assert row is not None  # INSERT … RETURNING yields its row or raises
    return row


async def _explain(
    db: RequestDb, appointment_id: uuid.UUID, expected_version: int | None
) -> Exception:
    """Why a guarded UPDATE matched no row."""
    row = await db.one_or_none(
        select(appointment.c.status, appointment.c.version).where(
            appointment.c.hospital_id == db.hospital_id, appointment.c.id == appointment_id
        )
    )
    if row is None:
        return NotFound("appointment")
    if expected_version is not None and row.version != expected_version:
        return VersionConflict(row.version)
    return IllegalState(row.status)


async def _guarded_update(
    db: RequestDb,
    appointment_id: uuid.UUID,
    *,
    from_statuses: Sequence[str],
    expected_version: int | None,
    values: dict[str, Any],
) -> Row[Any]:
    stmt = update(appointment).where(
        appointment.c.hospital_id == db.hospital_id,
        appointment.c.id == appointment_id,
        appointment.c.status.in_(list(from_statuses)),
    )
    if expected_version is not None:
        stmt = stmt.where(appointment.c.version == expected_version)
    stmt = stmt.values(
        **values, version=appointment.c.version + 1, updated_at=func.now()
    ).returning(*COLUMNS)
    row = await returning_one(db, stmt, REFERENCES)
    if row is None:
        raise await _explain(db, appointment_id, expected_version)
    return row


async def reschedule(
    db: RequestDb,
    appointment_id: uuid.UUID,
    *,
    expected_version: int,
    start_at: dt.datetime,
    end_at: dt.datetime,
    from_statuses: Sequence[str],
) -> Row[Any]:
    """Move the appointment; raises SlotTaken, NotFound, VersionConflict or IllegalState."""
    return await _guarded_update(
        db,
        appointment_id,
        from_statuses=from_statuses,
        expected_version=expected_version,
        values={"start_at": start_at, "end_at": end_at},
    )


async def set_status(
    db: RequestDb,
    appointment_id: uuid.UUID,
    *,
    status: str,
    from_statuses: Sequence[str],
    expected_version: int | None,
    cancellation_reason: str | None = None,
) -> Row[Any]:
    """Move to ``status`` if the row is in one of ``from_statuses`` (and at the expected version).

    Re-activating a slot (``waitlist → booked``) can collide: :class:`SlotTaken`.
    """
    values: dict[str, Any] = {"status": status}
    if cancellation_reason is not None:
        values["cancellation_reason"] = cancellation_reason
    return await _guarded_update(
        db,
        appointment_id,
        from_statuses=from_statuses,
        expected_version=expected_version,
        values=values,
    )
