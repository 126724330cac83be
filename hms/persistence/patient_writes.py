"""Patient writes: INSERT and versioned UPDATE, both ``RETURNING`` the row the reads use.

Never commits: the mutation resolver owns the transaction (and the savepoint around each write).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Row, func, insert, select, update

from hms.models.ids import uuid7
from hms.models.tables import patient
from hms.persistence.database import RequestDb
from hms.persistence.errors import NotFound, VersionConflict, returning_one
from hms.persistence.patients import COLUMNS

#: Columns a caller may set; everything else (ids, timestamps, version) is the database's.
WRITABLE = frozenset(
    {
        "mrn",
        "given_name",
        "family_name",
        "birth_date",
        "gender",
        "phone",
        "email",
        "active",
        "confidential",
        "national_id_last4",
        "national_id_enc",
    }
)


async def create(
    db: RequestDb, values: dict[str, Any], patient_id: uuid.UUID | None = None
) -> Row[Any]:
    """Insert a patient; raises :class:`MrnTaken` when the MRN is in use in this hospital."""
    assert WRITABLE.issuperset(values), set(values) - WRITABLE
    stmt = (
        insert(patient)
        .values(hospital_id=db.hospital_id, id=patient_id or uuid7(), **values)
        .returning(*COLUMNS)
    )
    row = await returning_one(db, stmt)
    assert row is not None  # INSERT … RETURNING yields its row or raises
    return row


async def current_version(db: RequestDb, patient_id: uuid.UUID) -> int | None:
    return await db.scalar(  # type: ignore[no-any-return]
        select(patient.c.version).where(
            patient.c.hospital_id == db.hospital_id, patient.c.id == patient_id
        )
    )


async def update_(
    db: RequestDb, patient_id: uuid.UUID, expected_version: int, values: dict[str, Any]
) -> Row[Any]:
    """Change some fields if the row is still at ``expected_version``; the version moves in SQL.

    Raises :class:`NotFound`, :class:`VersionConflict` (with the current version) or
    :class:`MrnTaken`.
    """
    assert WRITABLE.issuperset(values), set(values) - WRITABLE
    stmt = (
        update(patient)
        .where(
            patient.c.hospital_id == db.hospital_id,
            patient.c.id == patient_id,
            patient.c.version == expected_version,
        )
        .values(**values, version=patient.c.version + 1, updated_at=func.now())
        .returning(*COLUMNS)
    )
    row = await returning_one(db, stmt)
    if row is not None:
        return row
    version = await current_version(db, patient_id)
    if version is None:
        raise NotFound("patient")
    raise VersionConflict(version)


async def national_id(db: RequestDb, patient_id: uuid.UUID) -> Row[Any] | None:
    """The patient's encrypted national id and confidential label; None if there is no such
    patient in the hospital."""
    return await db.one_or_none(
        select(patient.c.national_id_enc, patient.c.confidential).where(
            patient.c.hospital_id == db.hospital_id, patient.c.id == patient_id
        )
    )
