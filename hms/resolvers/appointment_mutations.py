"""Booking mutations: schedule, reschedule, cancel, and move along the FHIR workflow.

The database decides the races (exclusion constraint for overlaps; status and version guards in
the UPDATE's WHERE); this module validates input, explains refusals, and refreshes the loaders.
Roles: for now any authenticated principal of the hospital may write; role rules come with the
security issue.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable
from typing import Any

from hms.context import Context
from hms.models.workflow import (
    INITIAL_APPOINTMENT_STATUSES,
    RESCHEDULABLE_STATUSES,
    allowed_from,
    next_statuses,
)
from hms.persistence import appointment_writes, jobs
from hms.resolvers.outcomes import Outcome, Problem, atomic, input_field
from hms.resolvers.validation import Checks

_ID_FIELDS = {"patient": "patientId", "practitioner": "practitionerId", "appointment": "id"}


def graphql_status(code: str) -> str:
    """A FHIR code as the client sees it (``checked-in`` → ``CHECKED_IN``)."""
    return code.upper().replace("-", "_")


def _statuses(codes: tuple[str, ...]) -> str:
    return ", ".join(graphql_status(c) for c in codes) or "none (final)"


def _period(checks: Checks, start_at: dt.datetime, end_at: dt.datetime, max_hours: int) -> None:
    # The DateTime scalar guarantees both carry a UTC offset.
    if end_at <= start_at:
        checks.fail("endAt", "Must be after startAt")
    elif end_at - start_at > dt.timedelta(hours=max_hours):
        checks.fail("endAt", f"An appointment may last at most {max_hours} hours")


async def _reminded(ctx: Context, write: Awaitable[Any], *, created: bool = False) -> Any:
    """``write``, then the appointment's reminder made to match it, in the same savepoint: the
    reminder is enqueued, moved or cancelled exactly when the write commits."""
    row = await write
    if ctx.settings.reminders:
        await jobs.sync_reminder(
            ctx.db, row, lead=ctx.settings.reminder_lead, now=ctx.now, created=created
        )
    return row


def _done(ctx: Context, outcome: Outcome) -> Outcome:
    if outcome.row is not None:
        ctx.loaders.appointment_written(outcome.row)
    return outcome


async def schedule(
    ctx: Context,
    *,
    patient_id: str,
    practitioner_id: str,
    start_at: dt.datetime,
    end_at: dt.datetime,
    status: str,
    reason: str | None,
) -> Outcome:
    checks = Checks()
    patient_pk = checks.node_id("patientId", patient_id, "Patient")
    practitioner_pk = checks.node_id("practitionerId", practitioner_id, "Practitioner")
    _period(checks, start_at, end_at, ctx.settings.max_appointment_hours)
    if status not in INITIAL_APPOINTMENT_STATUSES:
        checks.fail(
            "status", f"A new appointment must be {_statuses(INITIAL_APPOINTMENT_STATUSES)}"
        )
    reason = checks.text("reason", reason)
    if checks.problems or patient_pk is None or practitioner_pk is None:
        return Outcome.failed(*checks.problems)
    outcome = await atomic(
        ctx,
        lambda: _reminded(
            ctx,
            appointment_writes.create(
                ctx.db,
                patient_id=patient_pk,
                practitioner_id=practitioner_pk,
                status=status,
                start_at=start_at,
                end_at=end_at,
                reason=reason,
            ),
            created=True,
        ),
        id_fields=_ID_FIELDS,
    )
    return _done(ctx, outcome)


async def reschedule(
    ctx: Context,
    global_id: str,
    *,
    expected_version: int,
    start_at: dt.datetime,
    end_at: dt.datetime,
) -> Outcome:
    checks = Checks()
    pk = checks.node_id("id", global_id, "Appointment")
    checks.version("expectedVersion", expected_version)
    _period(checks, start_at, end_at, ctx.settings.max_appointment_hours)
    if checks.problems or pk is None:
        return Outcome.failed(*checks.problems)

    def refused(current: str) -> Problem:
        return Problem(
            input_field("id"),
            f"An appointment in status {graphql_status(current)} cannot be rescheduled; "
            f"only {_statuses(RESCHEDULABLE_STATUSES)} can",
            "VALIDATION",
        )

    outcome = await atomic(
        ctx,
        lambda: _reminded(
            ctx,
            appointment_writes.reschedule(
                ctx.db,
                pk,
                expected_version=expected_version,
                start_at=start_at,
                end_at=end_at,
                from_statuses=RESCHEDULABLE_STATUSES,
            ),
        ),
        id_fields=_ID_FIELDS,
        illegal=refused,
    )
    return _done(ctx, outcome)


async def _move(
    ctx: Context,
    pk: uuid.UUID,
    target: str,
    *,
    expected_version: int | None,
    field: str,
    cancellation_reason: str | None = None,
) -> Outcome:
    def refused(current: str) -> Problem:
        return Problem(
            input_field(field),
            f"An appointment cannot go from {graphql_status(current)} to "
            f"{graphql_status(target)}; allowed next statuses: "
            f"{_statuses(next_statuses(current))}",
            "VALIDATION",
        )

    outcome = await atomic(
        ctx,
        lambda: _reminded(
            ctx,
            appointment_writes.set_status(
                ctx.db,
                pk,
                status=target,
                from_statuses=allowed_from(target),
                expected_version=expected_version,
                cancellation_reason=cancellation_reason,
            ),
        ),
        id_fields=_ID_FIELDS,
        illegal=refused,
    )
    return _done(ctx, outcome)


async def cancel(
    ctx: Context, global_id: str, *, reason: str, expected_version: int | None
) -> Outcome:
    """Cancel (frees the slot); a reason is required."""
    checks = Checks()
    pk = checks.node_id("id", global_id, "Appointment")
    checks.version("expectedVersion", expected_version)
    text = checks.text("reason", reason, required=True)
    if checks.problems or pk is None:
        return Outcome.failed(*checks.problems)
    return await _move(
        ctx,
        pk,
        "cancelled",
        expected_version=expected_version,
        field="id",
        cancellation_reason=text,
    )


async def set_status(
    ctx: Context, global_id: str, *, status: str, expected_version: int
) -> Outcome:
    checks = Checks()
    pk = checks.node_id("id", global_id, "Appointment")
    checks.version("expectedVersion", expected_version)
    if status == "cancelled":
        checks.fail("status", "Use cancelAppointment, which records the cancellation reason")
    if checks.problems or pk is None:
        return Outcome.failed(*checks.problems)
    return await _move(ctx, pk, status, expected_version=expected_version, field="status")
