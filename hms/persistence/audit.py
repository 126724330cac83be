"""SQL for the audit trail: append a request's event, verify each hospital's chain.

An event says who (subject, roles, client application) read or wrote which patients' data
(their ids only), through which operation, which field classes the document selected, with
what outcome and when; never variables, values or names. A request appends with a plain
INSERT (no lock: requests never wait for each other); :func:`seal` (every second in each app
worker) then chains each hospital's new events: ``seq``, ``prev_hash`` and ``hash``, each hash
covering the previous one's (migration 0005). An edited, removed or reordered sealed event
breaks the chain that :func:`verify` recomputes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from hms.models.tables import audit_event, audit_patient
from hms.persistence.database import (
    APP_ROLE,
    DatabaseUnavailable,
    RequestDb,
    classify,
    side_engine,
)

#: The text each hash covers (the same expression as the sealer of migration 0007).
CANONICAL = """concat_ws('|', {r}.hospital_id::text, {r}.id::text, {r}.seq::text,
  to_char({r}.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), {r}.subject,
  array_to_string({r}.roles, ','), coalesce({r}.client, ''), {r}.operation_type,
  coalesce({r}.operation_name, ''), array_to_string({r}.patient_ids, ','),
  array_to_string({r}.field_classes, ','), {r}.purpose, {r}.outcome,
  coalesce({r}.trace_id, ''), {r}.reason)"""

#: The columns a writer gives (the database sets the rest).
COLUMNS = (
    "hospital_id, subject, roles, client, operation_type, operation_name, patient_ids,"
    " field_classes, outcome, purpose, reason, trace_id"
)

_APPEND = text(
    f"INSERT INTO audit_event ({COLUMNS}) VALUES (:hospital_id, :subject, :roles, :client,"
    " :operation_type, :operation_name, :patient_ids, :field_classes, :outcome, :purpose,"
    " :reason, :trace_id) RETURNING seq"
)


#: The same append for a statement sent to asyncpg directly (the compiled read path).
RAW_APPEND = (
    f"INSERT INTO audit_event ({COLUMNS})"
    " VALUES ($1, $2, $3::text[], $4, $5, $6, $7::uuid[], $8::text[], $9, $10, $11, $12)"
)


@dataclasses.dataclass(frozen=True)
class Event:
    subject: str
    roles: Sequence[str]
    client: str | None
    operation_type: str
    operation_name: str | None
    patient_ids: Sequence[uuid.UUID]
    field_classes: Sequence[str]
    outcome: str
    #: TREAT, or ETREAT when the operation read a confidential record under an emergency grant.
    purpose: str = "TREAT"
    #: The user's reason, for operations that need one (never PHI: free text the user typed is
    #: bounded and stored, not logged).
    reason: str | None = None
    #: The caller's W3C trace id, if it sent a ``traceparent``.
    trace_id: str | None = None


def raw_values(hospital_id: uuid.UUID, event: Event) -> list[Any]:
    """The values of :data:`RAW_APPEND` for ``event``."""
    return [
        hospital_id,
        event.subject,
        sorted(event.roles),
        event.client,
        event.operation_type,
        event.operation_name,
        sorted(set(event.patient_ids)),
        sorted(event.field_classes),
        event.outcome,
        event.purpose,
        event.reason,
        event.trace_id,
    ]


async def append(db: RequestDb, event: Event) -> int:
    """One statement, in the request's read-write transaction (so it commits with it); the
    event's place in its hospital's chain."""
    seq: int = await db.scalar(
        _APPEND,
        {
            "hospital_id": db.hospital_id,
            "subject": event.subject,
            "roles": sorted(event.roles),
            "client": event.client,
            "operation_type": event.operation_type,
            "operation_name": event.operation_name,
            "patient_ids": sorted(set(event.patient_ids)),
            "field_classes": sorted(event.field_classes),
            "outcome": event.outcome,
            "purpose": event.purpose,
            "reason": event.reason,
            "trace_id": event.trace_id,
        },
    )
    return seq


_CHAIN = text(
    f"""
    SELECT seq, prev_hash = coalesce(lag(hash) OVER w, ''::bytea) AS linked,
           seq = coalesce(lag(seq) OVER w, 0) + 1 AS consecutive,
           hash = sha256(prev_hash || convert_to({CANONICAL.format(r="e")}, 'UTF8')) AS intact,
           hash
    FROM audit_event e
    WHERE e.hospital_id = nullif(current_setting('app.hospital_id', true), '')::uuid
      AND e.hash IS NOT NULL
    WINDOW w AS (ORDER BY seq)
    ORDER BY seq
    """
)
_HEAD = text("SELECT seq, hash FROM audit_head WHERE hospital_id = :hospital_id")


_SEAL_ALL = text("SELECT audit_seal_all()")


async def seal(engine: AsyncEngine) -> int:
    """Seal every hospital's new events into its chain; how many were sealed."""
    async with engine.begin() as conn:
        sealed: int = (await conn.execute(_SEAL_ALL)).scalar_one()
    return sealed


async def heads(engine: AsyncEngine) -> list[tuple[uuid.UUID, int, bytes]]:
    """Each hospital's newest sealed event: ``(hospital id, seq, hash)``, as the owner sees it."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(text("SELECT hospital_id, seq, hash FROM audit_head ORDER BY 1"))
        ).all()
    return [(row.hospital_id, row.seq, bytes(row.hash)) for row in rows]


async def verify(
    engine: AsyncEngine, hospital_id: uuid.UUID, anchors: Sequence[tuple[int, bytes]] = ()
) -> tuple[int, list[str]]:
    """Recompute ``hospital_id``'s chain as the owner: the events checked and every break
    (events not sealed yet are not part of it: run :func:`seal` first).

    ``anchors`` are ``(seq, hash)`` heads recorded outside the database earlier (``hms audit
    anchor``): a chain rewritten from some event on, hashes recomputed and all, is intact in
    itself but no longer passes through them."""
    problems: list[str] = []
    async with engine.begin() as conn:
        await conn.execute(
            text("SELECT set_config('app.hospital_id', :h, true)"), {"h": str(hospital_id)}
        )
        rows: list[Any] = list((await conn.execute(_CHAIN)).all())
        head = (await conn.execute(_HEAD, {"hospital_id": hospital_id})).first()
    for row in rows:
        if not row.intact:
            problems.append(f"event {row.seq}: its contents changed after it was written")
        if not row.linked:
            problems.append(f"event {row.seq}: does not follow the event before it")
        if not row.consecutive:
            problems.append(f"event {row.seq}: events before it are missing")
    sealed = {row.seq: bytes(row.hash) for row in rows}
    for seq, anchored in anchors:
        if seq not in sealed:
            problems.append(f"event {seq}, recorded in an anchor, is gone")
        elif sealed[seq] != anchored:
            problems.append(
                f"event {seq} differs from its anchor: the chain was rewritten from there or before"
            )
    newest = (rows[-1].seq, bytes(rows[-1].hash)) if rows else (0, b"")
    recorded = (head.seq, bytes(head.hash)) if head is not None else (0, b"")
    if newest != recorded:
        problems.append(
            f"the newest event is {newest[0]} but the chain's head says {recorded[0]}:"
            " events were removed or added around the chain"
        )
    return len(rows), problems


async def trail(db: RequestDb, patient_id: uuid.UUID, before: int | None, limit: int) -> list[Any]:
    """The patient's sealed events, newest first, older than event ``before``; ``limit`` + 1
    rows (the look-ahead says whether there are more)."""
    statement = (
        select(
            audit_event.c.id,
            audit_event.c.seq,
            audit_event.c.at,
            audit_event.c.subject,
            audit_event.c.roles,
            audit_event.c.client,
            audit_event.c.operation_type,
            audit_event.c.operation_name,
            audit_event.c.field_classes,
            audit_event.c.purpose,
            audit_event.c.outcome,
            audit_event.c.reason,
            audit_event.c.trace_id,
        )
        .select_from(
            audit_patient.join(
                audit_event,
                and_(
                    audit_event.c.hospital_id == audit_patient.c.hospital_id,
                    audit_event.c.id == audit_patient.c.event_id,
                ),
            )
        )
        .where(
            audit_patient.c.hospital_id == db.hospital_id,
            audit_patient.c.patient_id == patient_id,
        )
        .order_by(audit_patient.c.event_id.desc())
        .limit(limit + 1)
    )
    if before is not None:
        statement = statement.where(audit_patient.c.event_id < before)
    return await db.all(statement)


class Writer:
    """Appends the events of concurrent reads together: one transaction, one round trip per
    hospital (asyncpg pipelines ``executemany``), one WAL flush for the batch.

    :meth:`append` returns once its event is committed, so a read still answers only after its
    event is durable; it raises :class:`~hms.persistence.database.DatabaseFailure` if the batch
    could not be written. Reads no longer pay a read-write transaction and a flush each.
    Writes append in their own transaction instead (:func:`append`), atomic with the write.
    """

    def __init__(self, database_url: str, *, max_batch: int = 512, pooled: bool = False) -> None:
        self.engine = side_engine(database_url, "hms-audit", pooled=pooled)
        self.max_batch = max_batch
        self.batches = 0  # transactions written, for tests and metrics
        self._pending: list[tuple[uuid.UUID, Event, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def append(self, hospital_id: uuid.UUID, event: Event) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Retrieved here too, so a request that left before its batch failed leaves no
        # "exception never retrieved" behind.
        done.add_done_callback(lambda f: None if f.cancelled() else f.exception())
        self._pending.append((hospital_id, event, done))
        self._wake.set()
        await asyncio.shield(done)  # a cancelled request leaves its event to be written

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                try:
                    await self._write(batch)
                except BaseException as error:  # also the writer's own cancellation at stop
                    failure = (
                        classify(error) if isinstance(error, Exception) else None
                    ) or DatabaseUnavailable("the audit trail could not be written")
                    for _, _, done in batch:
                        if not done.done():
                            done.set_exception(failure)
                    if not isinstance(error, Exception):
                        raise
                    continue
                for _, _, done in batch:
                    if not done.done():
                        done.set_result(None)

    async def _write(self, batch: list[tuple[uuid.UUID, Event, asyncio.Future[None]]]) -> None:
        by_hospital: dict[uuid.UUID, list[list[Any]]] = {}
        for hospital_id, event, _ in batch:
            by_hospital.setdefault(hospital_id, []).append(raw_values(hospital_id, event))
        async with self.engine.connect() as conn:
            raw: Any = (await conn.get_raw_connection()).driver_connection
            async with raw.transaction():
                await raw.execute(f"SELECT set_config('role', '{APP_ROLE}', true)")
                for hospital_id, rows in by_hospital.items():
                    await raw.execute(
                        "SELECT set_config('app.hospital_id', $1, true)", str(hospital_id)
                    )
                    await raw.executemany(RAW_APPEND, rows)
        self.batches += 1

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for _, _, done in self._pending:
            if not done.done():
                done.set_exception(DatabaseUnavailable("the server is stopping"))
        await self.engine.dispose()
