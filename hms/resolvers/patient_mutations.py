"""createPatient and updatePatient: validate, write in a savepoint, refresh the loaders.

Roles: for now any authenticated principal of the hospital may write; role and PHI rules come
with the security issue.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from hms.context import Context
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
}
_NOT_NULL = ("mrn", "givenName", "familyName", "gender", "active")


def _check(checks: Checks, fields: dict[str, Any], today: dt.date) -> dict[str, Any]:
    """Validate the given input fields; the column values to write."""
    values: dict[str, Any] = {}
    for field, value in fields.items():
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


async def create_patient(ctx: Context, fields: dict[str, Any]) -> Outcome:
    """``fields``: input field name → value (``gender`` as its FHIR code)."""
    checks = Checks()
    values = _check(checks, fields, ctx.now.date())
    if checks.problems:
        return Outcome.failed(*checks.problems)
    outcome = await atomic(ctx, lambda: patient_writes.create(ctx.db, values), id_fields={})
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
