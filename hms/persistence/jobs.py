"""Jobs enqueued and cancelled inside a request's own transaction (PgQueuer's queue table).

A job row is written on the request's connection, so it exists exactly when the write that
caused it commits: a booking that rolls back enqueues nothing, a cancellation removes its
reminder in the same commit. The queue's trigger NOTIFYs the workers at that commit too.
Payloads hold ids only, never PHI: the job reads what it needs under its hospital's tenant.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

import orjson
from sqlalchemy import Row, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from hms.models.tables import appointment, hospital_webhook, patient, practitioner
from hms.persistence.database import RequestDb


@dataclasses.dataclass(frozen=True)
class Queue:
    """One kind of job: the PgQueuer entrypoint and the priority its jobs are enqueued with
    (higher runs first when workers are behind)."""

    name: str
    priority: int


REMINDERS = Queue("reminders", 30)
CLINICAL = Queue("clinical", 20)
REPORTS = Queue("reports", 10)
QUEUES = (REMINDERS, CLINICAL, REPORTS)
BY_NAME = {queue.name: queue for queue in QUEUES}

#: An appointment in this status is reminded of; any other status has no reminder.
REMINDED_STATUS = "booked"

#: Cancel the live job with a dedupe key in one statement: removed from the queue and logged
#: ``canceled`` in PgQueuer's log, as its own cancellation does. (PgQueuer's takes a lookup,
#: the log statement and a NOTIFY to the worker, three round trips on every appointment write:
#: 20% of the write mix's throughput. A worker already running the job is not told; a reminder
#: reads its appointment again before it sends anything.)
_CANCEL = """
WITH gone AS (
    DELETE FROM pgqueuer WHERE dedupe_key = $1 AND status IN ('queued', 'picked')
    RETURNING id, entrypoint, priority
), logged AS (
    INSERT INTO pgqueuer_log (job_id, status, entrypoint, priority)
    SELECT id, 'canceled', entrypoint, priority FROM gone
)
SELECT id FROM gone
"""


def payload(hospital_id: uuid.UUID | None, **fields: Any) -> bytes:
    """What a job carries: its hospital (the tenant it runs under) and ids."""
    if hospital_id is None:
        raise ValueError("a job belongs to a hospital")
    return orjson.dumps({"hospital": str(hospital_id), **fields})


async def enqueue(
    db: RequestDb,
    queue: Queue,
    body: bytes,
    *,
    delay: dt.timedelta | None = None,
    dedupe_key: str | None = None,
) -> int:
    """Add a job in ``db``'s transaction; returns its id."""
    # Imported at the first enqueue, not with the app: PgQueuer's package brings its CLI
    # (typer, rich, pydantic), ~0.2 s of every server start for a one-time cost here.
    from pgqueuer.adapters.persistence.queries import Queries

    async def work(conn: Any) -> int:
        ids = await Queries.from_asyncpg_connection(conn).enqueue(
            queue.name, body, queue.priority, delay, dedupe_key
        )
        return int(ids[0])

    return await db.on_driver(work)


async def cancel(db: RequestDb, dedupe_key: str) -> int | None:
    """Cancel the live (waiting or running) job with this key in ``db``'s transaction: removed
    and logged as cancelled. Returns its id, None if there was none."""

    async def work(conn: Any) -> int | None:
        found = await conn.fetchval(_CANCEL, dedupe_key)
        return None if found is None else int(found)

    return await db.on_driver(work)


def reminder_key(appointment_id: uuid.UUID) -> str:
    """At most one live reminder per appointment."""
    return f"reminder:{appointment_id}"


async def sync_reminder(
    db: RequestDb, row: Any, *, lead: dt.timedelta, now: dt.datetime, created: bool
) -> None:
    """Make the appointment's reminder match the appointment ``row`` just written: one reminder
    at ``start_at - lead`` (or now, if that has passed) while it is booked and still ahead,
    none otherwise. A new appointment has none to cancel."""
    key = reminder_key(row.id)
    if not created:
        await cancel(db, key)
    if row.status != REMINDED_STATUS or row.start_at <= now:
        return
    delay = max(row.start_at - lead - now, dt.timedelta(0))
    body = payload(db.hospital_id, appointment=str(row.id), startAt=row.start_at.isoformat())
    await enqueue(db, REMINDERS, body, delay=delay, dedupe_key=key)


#: An encounter in this status has its patient's visit summary brought up to date.
SUMMARISED_STATUS = "finished"


async def after_encounter(db: RequestDb, row: Any) -> None:
    """A finished encounter queues the clinical job that recomputes its patient's visit
    summary (the job recomputes from scratch, so a repeated job is harmless)."""
    if row.status == SUMMARISED_STATUS:
        body = payload(db.hospital_id, patient=str(row.patient_id), encounter=str(row.id))
        await enqueue(db, CLINICAL, body)


async def reminder_facts(db: RequestDb, appointment_id: uuid.UUID) -> Row[Any] | None:
    """What a reminder says: the appointment with its patient's contact data and practitioner,
    read under the job's tenant (another hospital's appointment is not found)."""
    stmt = (
        select(
            appointment.c.id,
            appointment.c.status,
            appointment.c.start_at,
            appointment.c.end_at,
            appointment.c.version,
            patient.c.id.label("patient_id"),
            patient.c.given_name,
            patient.c.phone,
            patient.c.email,
            practitioner.c.id.label("practitioner_id"),
            practitioner.c.given_name.label("practitioner_given_name"),
            practitioner.c.family_name.label("practitioner_family_name"),
        )
        .join(
            patient,
            (patient.c.hospital_id == appointment.c.hospital_id)
            & (patient.c.id == appointment.c.patient_id),
        )
        .join(
            practitioner,
            (practitioner.c.hospital_id == appointment.c.hospital_id)
            & (practitioner.c.id == appointment.c.practitioner_id),
        )
        .where(appointment.c.hospital_id == db.hospital_id, appointment.c.id == appointment_id)
    )
    return await db.one_or_none(stmt)


async def webhook_of(owner: AsyncEngine, hospital_id: uuid.UUID) -> Any:
    """A hospital's webhook (url, secret), read as the owner role: the app role has no grant."""
    async with owner.connect() as conn:
        result = await conn.execute(
            select(hospital_webhook.c.url, hospital_webhook.c.secret).where(
                hospital_webhook.c.hospital_id == hospital_id
            )
        )
        return result.first()


async def set_webhook(owner: AsyncEngine, hospital_id: uuid.UUID, url: str, secret: str) -> None:
    async with owner.begin() as conn:
        stmt = pg_insert(hospital_webhook).values(hospital_id=hospital_id, url=url, secret=secret)
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[hospital_webhook.c.hospital_id],
                set_={
                    "url": stmt.excluded.url,
                    "secret": stmt.excluded.secret,
                    "updated_at": func.now(),
                },
            )
        )


_SUMMARISE = text(
    """
INSERT INTO patient_visit_summary AS s
    (hospital_id, patient_id, finished_encounters, first_visit_at, last_visit_at,
     total_minutes, updated_at)
SELECT :hospital_id, :patient_id, count(*), min(period_start), max(period_start),
       coalesce(round(sum(extract(epoch FROM period_end - period_start)) / 60), 0)::bigint,
       now()
FROM encounter
WHERE hospital_id = :hospital_id AND patient_id = :patient_id AND status = 'finished'
HAVING count(*) > 0
ON CONFLICT (hospital_id, patient_id) DO UPDATE SET
    finished_encounters = excluded.finished_encounters,
    first_visit_at = excluded.first_visit_at,
    last_visit_at = excluded.last_visit_at,
    total_minutes = excluded.total_minutes,
    updated_at = excluded.updated_at
RETURNING s.patient_id
"""
)


async def summarise_visits(db: RequestDb, patient_id: uuid.UUID) -> None:
    """Recompute one patient's visit summary from their finished encounters (idempotent: the
    same encounters give the same row, however often it runs)."""
    await db.all(_SUMMARISE, {"hospital_id": db.hospital_id, "patient_id": patient_id})
