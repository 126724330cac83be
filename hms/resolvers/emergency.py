"""Break-the-glass and the national id: reads that need a reason, and leave it in the audit.

``openEmergencyAccess``: a clinician opens a time-boxed grant on a confidential patient, with
a reason; while it is open, that clinician reads the patient's clinical and sensitive fields,
and those reads are audited with purpose ETREAT. ``revealNationalId``: an administrator or a
clinician decrypts a patient's full national id, with a reason (for a confidential patient,
only under an open grant). ``emergencyGrants``: the grants, newest first, for review.

Who may run each is the schema's business (:mod:`hms.security.policy`); the events' reasons
are stored in the audit trail, never logged.
"""

from __future__ import annotations

from typing import Any

from hms.context import Context, note_emergency, note_reason, touch
from hms.persistence import grants, patient_writes
from hms.persistence.cipher import CipherError
from hms.resolvers.audit_trail import limit_of
from hms.resolvers.outcomes import Outcome, Problem, atomic, input_field, not_found
from hms.resolvers.patient_mutations import NATIONAL_ID
from hms.resolvers.relay import serial_after, serial_cursor
from hms.resolvers.validation import Checks

#: The longest grant (the database refuses longer ones too).
MAX_MINUTES = 12 * 60
DEFAULT_MINUTES = 60
PREFIX = "grant:"


def confidential_refusal() -> str:
    return (
        "This patient's record is confidential: open emergency access (openEmergencyAccess)"
        " with a reason first"
    )


async def open_emergency_access(ctx: Context, global_id: str, reason: str, minutes: int) -> Outcome:
    checks = Checks()
    patient_id = checks.node_id("patientId", global_id, "Patient")
    said = checks.reason("reason", reason)
    if not 1 <= minutes <= MAX_MINUTES:
        checks.fail("minutes", f"Must be between 1 and {MAX_MINUTES}")
    if checks.problems or patient_id is None:
        return Outcome.failed(*checks.problems)
    subject = ctx.principal.subject
    try:
        outcome = await atomic(
            ctx,
            lambda: grants.open_(ctx.db, patient_id, subject, said, minutes),
            id_fields={"patient": "patientId"},
        )
    except grants.NotConfidential:
        return Outcome.failed(
            Problem(
                input_field("patientId"),
                "This patient's record is not confidential: no emergency access is needed",
                "VALIDATION",
            )
        )
    if outcome.row is not None:
        touch(patient_id)
        note_reason(said)
        note_emergency()
        ctx.granted()
    return outcome


async def reveal_national_id(ctx: Context, global_id: str, reason: str) -> Outcome:
    """The outcome's row is the national id (None when the patient has none on record)."""
    checks = Checks()
    patient_id = checks.node_id("patientId", global_id, "Patient")
    said = checks.reason("reason", reason)
    if checks.problems or patient_id is None:
        return Outcome.failed(*checks.problems)
    row = await patient_writes.national_id(ctx.db, patient_id)
    if row is None:
        return Outcome.failed(not_found("patientId", "patient"))
    if row.confidential:
        if patient_id not in await ctx.emergency_grants():
            return Outcome.failed(
                Problem(input_field("patientId"), confidential_refusal(), "FORBIDDEN")
            )
        note_emergency()
    touch(patient_id)
    note_reason(said)
    if row.national_id_enc is None:
        return Outcome(None)
    try:
        plain = ctx.cipher.decrypt(
            bytes(row.national_id_enc),
            what=NATIONAL_ID,
            hospital_id=ctx.hospital_id,
            row_id=patient_id,
        )
    except CipherError as error:
        return Outcome.failed(
            Problem(
                input_field("patientId"), f"The national id cannot be read: {error}", "UNAVAILABLE"
            )
        )
    return Outcome(plain)


def cursor(row: Any) -> str:
    return serial_cursor(PREFIX, row.id)


async def grants_page(ctx: Context, first: int | None, after: str | None) -> tuple[list[Any], bool]:
    limit = limit_of(ctx, first)
    rows = await grants.page(ctx.db, serial_after(PREFIX, after), limit)
    return rows[:limit], len(rows) > limit
