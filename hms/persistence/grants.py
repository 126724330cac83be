"""SQL for break-the-glass grants: a clinician's time-boxed access to a confidential record.

A grant names the patient, the user and the reason, and ends at ``expires_at``; it is never
edited or removed (migration 0007), so the review lists every one that was ever opened.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import bindparam, func, insert, literal, select

from hms.models.tables import emergency_grant as grant
from hms.models.tables import patient
from hms.persistence.database import RequestDb
from hms.persistence.errors import NotFound, WriteError

# Row-level security shows a request its own hospital's grants only.
OPEN_FOR = select(grant.c.patient_id).where(
    grant.c.subject == bindparam("subject"), grant.c.expires_at > func.now()
)

COLUMNS = (
    grant.c.id,
    grant.c.patient_id,
    grant.c.subject,
    grant.c.reason,
    grant.c.opened_at,
    grant.c.expires_at,
)


async def open_for(db: RequestDb, subject: str) -> frozenset[uuid.UUID]:
    """The patients ``subject`` holds an open grant for, in the request's hospital."""
    rows = await db.all(OPEN_FOR, {"subject": subject})
    return frozenset(row.patient_id for row in rows)


class NotConfidential(WriteError):
    """The patient's record is not confidential: no grant is needed to read it."""


async def open_(
    db: RequestDb, patient_id: uuid.UUID, subject: str, reason: str, minutes: int
) -> Any:
    """Open a grant on a confidential patient; raises :class:`NotFound` for a patient the
    hospital does not have and :class:`NotConfidential` for an open record."""
    statement = (
        insert(grant)
        .from_select(
            ["hospital_id", "patient_id", "subject", "reason", "expires_at"],
            select(
                patient.c.hospital_id,
                patient.c.id,
                literal(subject),
                literal(reason),
                func.now() + func.make_interval(0, 0, 0, 0, 0, literal(minutes)),
            ).where(
                patient.c.hospital_id == db.hospital_id,
                patient.c.id == patient_id,
                patient.c.confidential,
            ),
        )
        .returning(*COLUMNS)
    )
    row = await db.one_or_none(statement)
    if row is not None:
        return row
    exists = await db.scalar(
        select(patient.c.id).where(
            patient.c.hospital_id == db.hospital_id, patient.c.id == patient_id
        )
    )
    if exists is None:
        raise NotFound("patient")
    raise NotConfidential()


async def page(db: RequestDb, before: int | None, limit: int) -> list[Any]:
    """Grants newest first, older than grant ``before``; ``limit`` + 1 rows (look-ahead)."""
    statement = (
        select(*COLUMNS)
        .where(grant.c.hospital_id == db.hospital_id)
        .order_by(grant.c.id.desc())
        .limit(limit + 1)
    )
    if before is not None:
        statement = statement.where(grant.c.id < before)
    return await db.all(statement)
