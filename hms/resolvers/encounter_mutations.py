"""recordEncounter: validate, check the appointment belongs to the patient, insert.

Roles: for now any authenticated principal of the hospital may write; role and PHI rules come
with the security issue.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable
from typing import Any

from hms.context import Context
from hms.persistence import encounter_writes, jobs
from hms.resolvers.outcomes import Outcome, atomic, not_found
from hms.resolvers.validation import Checks


async def _processed(ctx: Context, write: Awaitable[Any]) -> Any:
    """``write``, then (for a finished encounter) its clinical job, in the same savepoint."""
    row = await write
    await jobs.after_encounter(ctx.db, row)
    return row


_ID_FIELDS = {
    "patient": "patientId",
    "practitioner": "practitionerId",
    "appointment": "appointmentId",
}


async def record_encounter(
    ctx: Context,
    *,
    patient_id: str,
    practitioner_id: str | None,
    appointment_id: str | None,
    class_: str,
    status: str,
    period_start: dt.datetime,
    period_end: dt.datetime | None,
    reason: str | None,
) -> Outcome:
    checks = Checks()
    patient_pk = checks.node_id("patientId", patient_id, "Patient")
    practitioner_pk = (
        None
        if practitioner_id is None
        else checks.node_id("practitionerId", practitioner_id, "Practitioner")
    )
    appointment_pk = (
        None
        if appointment_id is None
        else checks.node_id("appointmentId", appointment_id, "Appointment")
    )
    if period_end is not None and period_end < period_start:
        checks.fail("periodEnd", "Must not be before periodStart")
    reason = checks.text("reason", reason)
    if appointment_pk is not None:
        # Read through the loader: RLS hides another hospital's appointment, so foreign and
        # missing ids answer alike.
        appointment = await ctx.loaders.appointment_by_id.load(appointment_pk)
        if appointment is None:
            checks.problems.append(not_found("appointmentId", "appointment"))
        elif patient_pk is not None and appointment.patient_id != patient_pk:
            checks.fail("appointmentId", "The appointment belongs to another patient")
    if checks.problems or patient_pk is None:
        return Outcome.failed(*checks.problems)
    outcome = await atomic(
        ctx,
        lambda: _processed(
            ctx,
            encounter_writes.create(
                ctx.db,
                patient_id=patient_pk,
                practitioner_id=practitioner_pk,
                appointment_id=appointment_pk,
                status=status,
                class_=class_,
                period_start=period_start,
                period_end=period_end,
                reason=reason,
            ),
        ),
        id_fields=_ID_FIELDS,
    )
    if outcome.row is not None:
        ctx.loaders.encounter_written(outcome.row)
    return outcome
