"""SQL for reports: the CSV exports users ask for, their status, and the rows they list.

A report is ``queued`` when requested (its job enqueued in the same transaction), ``running``
while its job writes it, then ``ready`` with its content, or ``failed`` with a PHI-free cause.
Only its job moves it past ``queued``; a ready report never changes again, so a job delivered
twice finds nothing to do. Never commits.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from sqlalchemy import Row, Select, bindparam, delete, func, insert, select, tuple_, update
from sqlalchemy.sql.elements import KeyedColumnElement

from hms.models.ids import uuid7
from hms.models.tables import appointment, encounter, patient, practitioner, report
from hms.persistence import jobs
from hms.persistence.database import RequestDb
from hms.persistence.queries import HOSPITAL, keys_in

#: Everything but the content: a report's row is read for its status often, its content only
#: when it is downloaded.
COLUMNS = (
    report.c.id,
    report.c.kind,
    report.c.range_start,
    report.c.range_end,
    report.c.status,
    report.c.requested_by,
    report.c.requested_at,
    report.c.finished_at,
    report.c.row_count,
    report.c.error,
)

BY_IDS = select(*COLUMNS).where(
    report.c.hospital_id == bindparam(HOSPITAL), keys_in(report.c.id, "keys")
)

#: Rows a job reads per statement: a year of a large hospital is hundreds of thousands of
#: rows, never all in memory at once as driver rows.
PAGE_SIZE = 5000


async def by_ids(db: RequestDb, ids: Sequence[uuid.UUID]) -> list[Row[Any]]:
    return await db.all(BY_IDS, {HOSPITAL: db.hospital_id, "keys": list(ids)})


async def create(
    db: RequestDb, *, kind: str, start: dt.datetime, end: dt.datetime, requested_by: str
) -> Row[Any]:
    """A queued report of the request's hospital."""
    statement = (
        insert(report)
        .values(
            hospital_id=db.hospital_id,
            id=uuid7(),
            kind=kind,
            range_start=start,
            range_end=end,
            requested_by=requested_by,
        )
        .returning(*COLUMNS)
    )
    row = await db.one_or_none(statement)
    assert row is not None  # INSERT … RETURNING yields its row or raises
    return row


def job_key(report_id: uuid.UUID) -> str:
    """At most one live job per report."""
    return f"report:{report_id}"


async def queue(db: RequestDb, report_id: uuid.UUID) -> int:
    """Enqueue the job that writes the report, in ``db``'s transaction; the job's id."""
    body = jobs.payload(db.hospital_id, report=str(report_id))
    return await jobs.enqueue(db, jobs.REPORTS, body, dedupe_key=job_key(report_id))


async def start(db: RequestDb, report_id: uuid.UUID) -> Row[Any] | None:
    """Mark the report running (again, after a failed or interrupted try); None when it is
    ready already or does not exist in this hospital."""
    statement = (
        update(report)
        .where(
            report.c.hospital_id == db.hospital_id,
            report.c.id == report_id,
            report.c.status != "ready",
        )
        .values(status="running", finished_at=None, error=None)
        .returning(*COLUMNS)
    )
    return await db.one_or_none(statement)


async def finish(db: RequestDb, report_id: uuid.UUID, rendered: Any) -> bool:
    """Store the content of a running report and make it ready; False when it is not running
    (another delivery of its job finished it first)."""
    statement = (
        update(report)
        .where(
            report.c.hospital_id == db.hospital_id,
            report.c.id == report_id,
            report.c.status == "running",
        )
        .values(
            status="ready",
            content=rendered.content,
            row_count=rendered.rows,
            patient_ids=sorted(rendered.patients),
            finished_at=func.now(),
        )
        .returning(report.c.id)
    )
    return await db.one_or_none(statement) is not None


async def fail(db: RequestDb, report_id: uuid.UUID, cause: str) -> None:
    """Mark the report failed with ``cause`` (PHI-free); a ready report stays ready."""
    await db.all(
        update(report)
        .where(
            report.c.hospital_id == db.hospital_id,
            report.c.id == report_id,
            report.c.status != "ready",
        )
        .values(status="failed", error=cause, finished_at=func.now())
        .returning(report.c.id)
    )


async def ready(db: RequestDb, report_id: uuid.UUID) -> Row[Any] | None:
    """A ready report with its content; None when missing, another hospital's or not ready."""
    statement = select(*COLUMNS, report.c.content, report.c.patient_ids).where(
        report.c.hospital_id == db.hospital_id,
        report.c.id == report_id,
        report.c.status == "ready",
    )
    return await db.one_or_none(statement)


@dataclasses.dataclass(frozen=True)
class _Listing:
    """What a report of one kind lists: a statement over the rows with their patient and
    practitioner, and the columns of its order (start, then id: unique, and indexed with the
    hospital)."""

    statement: Select[Any]
    hospital: KeyedColumnElement[Any]
    start: KeyedColumnElement[Any]
    id: KeyedColumnElement[Any]


def _people(table: Any) -> tuple[Any, ...]:
    return (
        table.c.id,
        table.c.patient_id,
        patient.c.mrn,
        patient.c.family_name,
        patient.c.given_name,
        practitioner.c.given_name.label("practitioner_given_name"),
        practitioner.c.family_name.label("practitioner_family_name"),
        table.c.status,
    )


def _patient_of(table: Any) -> Any:
    return (patient.c.hospital_id == table.c.hospital_id) & (patient.c.id == table.c.patient_id)


def _practitioner_of(table: Any) -> Any:
    return (practitioner.c.hospital_id == table.c.hospital_id) & (
        practitioner.c.id == table.c.practitioner_id
    )


# Reasons, contact data and everything else stay out: a report lists who and when, no more.
_LISTINGS = {
    "appointments": _Listing(
        select(
            *_people(appointment),
            appointment.c.start_at.label("start_at"),
            appointment.c.end_at.label("end_at"),
        )
        .join_from(appointment, patient, _patient_of(appointment))
        .join(practitioner, _practitioner_of(appointment)),
        appointment.c.hospital_id,
        appointment.c.start_at,
        appointment.c.id,
    ),
    "encounters": _Listing(
        select(
            *_people(encounter),
            encounter.c.class_.label("class_"),
            encounter.c.period_start.label("start_at"),
            encounter.c.period_end.label("end_at"),
        )
        .join_from(encounter, patient, _patient_of(encounter))
        .outerjoin(practitioner, _practitioner_of(encounter)),
        encounter.c.hospital_id,
        encounter.c.period_start,
        encounter.c.id,
    ),
}


async def listed(
    db: RequestDb, kind: str, start: dt.datetime, end: dt.datetime
) -> AsyncIterator[list[Row[Any]]]:
    """The rows of a ``kind`` report over ``[start, end)`` in time order, in keyset pages of
    :data:`PAGE_SIZE`; each row has ``id``, ``patient_id``, ``mrn``, the patient's and the
    practitioner's names, ``status``, ``start_at``, ``end_at`` (and ``class_`` for
    encounters). Run it in one read-only transaction to list one snapshot."""
    page_size = PAGE_SIZE
    listing = _LISTINGS[kind]
    base = (
        listing.statement.where(
            listing.hospital == db.hospital_id, listing.start >= start, listing.start < end
        )
        .order_by(listing.start, listing.id)
        .limit(page_size)
    )
    statement = base
    while True:
        rows = await db.all(statement)
        if rows:
            yield rows
        if len(rows) < page_size:
            return
        last = rows[-1]
        statement = base.where(tuple_(listing.start, listing.id) > (last.start_at, last.id))


async def expire(db: RequestDb, days: int) -> int:
    """Delete the hospital's reports asked for more than ``days`` days ago, whatever their
    status (a job that still finds one later does nothing); how many went."""
    rows = await db.all(
        delete(report)
        .where(
            report.c.hospital_id == db.hospital_id,
            report.c.requested_at < func.now() - func.make_interval(0, 0, 0, days),
        )
        .returning(report.c.id)
    )
    return len(rows)
