"""createPatient and updatePatient: validate, write in a savepoint, refresh the loaders.

Who may run them is the schema's business (:mod:`hms.schema.guards`). A national id is stored
as its last four digits and the whole value encrypted for this patient (never readable through
a type; ``revealNationalId`` decrypts it).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from hms.context import Context
from hms.models.ids import uuid7
from hms.persistence import patient_writes
from hms.resolvers.outcomes import Outcome, atomic
from hms.resolvers.validation import Checks

#: GraphQL input field → column, for the fields a caller may set.
FIELDS = {
    "mrn": "mrn",
    "givenName": "given_name",
    "familyName": "family_name",
    "birthDate": "birth_date",
    "gender": "gender",
    "phone": "phone",
    "email": "email",
    "active": "active",
    "confidential": "confidential",
}
NATIONAL_ID = "national_id"  # what a national id's ciphertext is bound to, with its row
_NOT_NULL = ("mrn", "givenName", "familyName", "gender", "active", "confidential")


def _check(checks: Checks, fields: dict[str, Any], today: dt.date) -> dict[str, Any]:
    """Validate the given input fields; the column values to write."""
    values: dict[str, Any] = {}
    for field, value in fields.items():
        if field == "nationalId":
            continue  # see _national_id
        if value is None and field in _NOT_NULL:
            checks.fail(field, "Must not be null")
            continue
        if field in ("givenName", "familyName"):
            value = checks.name(field, value)
        elif field == "mrn":
            value = checks.mrn(field, value)
        elif field == "email":
            value = checks.email(field, value)
        elif field == "phone":
            value = checks.phone(field, value)
        elif field == "birthDate":
            checks.birth_date(field, value, today)
        values[FIELDS[field]] = value
    return values


def _national_id(
    ctx: Context, checks: Checks, fields: dict[str, Any], patient_id: uuid.UUID | None
) -> dict[str, Any]:
    """The columns for a given ``nationalId``: its last four digits and its ciphertext."""
    if "nationalId" not in fields:
        return {}
    before = len(checks.problems)
    digits = checks.national_id("nationalId", fields["nationalId"])
    if digits is None:
        return {"national_id_last4": None, "national_id_enc": None}
    if not ctx.cipher.ready:
        checks.fail("nationalId", "This server has no key to store national ids (HMS_PHI_KEY)")
    if len(checks.problems) > before or patient_id is None:
        return {}
    sealed = ctx.cipher.encrypt(
        digits, what=NATIONAL_ID, hospital_id=ctx.hospital_id, row_id=patient_id
    )
    return {"national_id_last4": digits[-4:], "national_id_enc": sealed}


async def create_patient(ctx: Context, fields: dict[str, Any]) -> Outcome:
    """``fields``: input field name → value (``gender`` as its FHIR code)."""
    checks = Checks()
    patient_id = uuid7()
    values = _check(checks, fields, ctx.now.date())
    values |= _national_id(ctx, checks, fields, patient_id)
    if checks.problems:
        return Outcome.failed(*checks.problems)
    outcome = await atomic(
        ctx, lambda: patient_writes.create(ctx.db, values, patient_id), id_fields={}
    )
    if outcome.row is not None:
        ctx.loaders.patient_written(outcome.row)
    return outcome


async def update_patient(
    ctx: Context, global_id: str, expected_version: int, changes: dict[str, Any]
) -> Outcome:
    """``changes`` holds only the fields the caller set; an explicit null clears a nullable one."""
    checks = Checks()
    patient_id = checks.node_id("id", global_id, "Patient")
    checks.version("expectedVersion", expected_version)
    values = _check(checks, changes, ctx.now.date())
    values |= _national_id(ctx, checks, changes, patient_id)
    if not changes:
        checks.fail("id", "Give at least one field to change")
    if checks.problems or patient_id is None:
        return Outcome.failed(*checks.problems)
    outcome = await atomic(
        ctx,
        lambda: patient_writes.update_(ctx.db, patient_id, expected_version, values),
        id_fields={"patient": "id"},
    )
    if outcome.row is not None:
        ctx.loaders.patient_written(outcome.row)
    return outcome
