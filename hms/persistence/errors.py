"""Domain failures of writes, translated from PostgreSQL's SQLSTATEs in one place.

Persistence raises these; the mutation resolvers turn them into ``userErrors``. The database is
the arbiter (exclusion, unique and composite foreign-key constraints), so the translation also
holds for the race a Python pre-check would lose.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Executable, Row
from sqlalchemy.exc import DBAPIError

from hms.persistence.database import RequestDb

EXCLUSION_VIOLATION = "23P01"
UNIQUE_VIOLATION = "23505"
FOREIGN_KEY_VIOLATION = "23503"


class WriteError(Exception):
    """Base of every expected write failure."""


class NotFound(WriteError):
    """The row (or a row it references) does not exist in the caller's hospital."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} not found")
        self.what = what


class VersionConflict(WriteError):
    def __init__(self, current: int) -> None:
        super().__init__(f"stale version; current version is {current}")
        self.current = current


class SlotTaken(WriteError):
    """The practitioner already has an active appointment overlapping this time."""


class MrnTaken(WriteError):
    """Another patient of this hospital already has this MRN."""


class IllegalState(WriteError):
    """The row is in a status from which the change is not allowed."""

    def __init__(self, status: str) -> None:
        super().__init__(f"not allowed from status {status}")
        self.status = status


def sqlstate(error: DBAPIError) -> str | None:
    return getattr(error.orig, "sqlstate", None)


def constraint_name(error: DBAPIError) -> str | None:
    # SQLAlchemy's asyncpg adapter keeps the driver's exception as the cause; it names the
    # constraint.
    driver_error = getattr(error.orig, "__cause__", None)
    name = getattr(driver_error, "constraint_name", None)
    return name if isinstance(name, str) else None


def translate(error: DBAPIError, references: dict[str, str]) -> WriteError | None:
    """The domain failure behind ``error``, or None when it is not an expected one.

    ``references`` maps a foreign-key constraint name to what it points at (``"patient"``).
    """
    state = sqlstate(error)
    name = constraint_name(error)
    if state == EXCLUSION_VIOLATION and name == "ex_appointment_no_double_booking":
        return SlotTaken("slot taken")
    if state == UNIQUE_VIOLATION and name == "uq_patient_hospital_id_mrn":
        return MrnTaken("mrn taken")
    if state == FOREIGN_KEY_VIOLATION and name in references:
        return NotFound(references[name])
    return None


async def returning_one(
    db: RequestDb, statement: Executable, references: dict[str, str] | None = None
) -> Row[Any] | None:
    """Run a write with RETURNING; an expected constraint failure becomes its domain error."""
    try:
        return await db.one_or_none(statement)
    except DBAPIError as error:
        failure = translate(error, references or {})
        if failure is None:
            raise
        # An expected failure becomes a userError and nothing reads its tracebacks, which would
        # sit in cycles until a collection: SQLAlchemy's asyncpg adapter keeps the driver error
        # it translated in a local of a frame on that error's own traceback, and this frame, on
        # the traceback of ``failure``, would keep ``failure`` (hence the ``del``).
        _drop_tracebacks(error)
        try:
            raise failure from error
        finally:
            del failure


def _drop_tracebacks(error: BaseException | None) -> None:
    """Clear the traceback of ``error`` and of every error it was raised from."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        error.__traceback__ = None
        error = error.__cause__ or error.__context__
