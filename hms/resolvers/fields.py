"""How each GraphQL object field maps to SQL: the one table both execution paths read.

The interpreted path builds its objects from rows with it (``from_row`` in the schema types), the
compiler writes SQL from it. A field is a :class:`Leaf` (a column, and how its value is
formatted), a :class:`ToOne` (a foreign key to another object) or a :class:`Children` (a nested
connection). ``tests/unit/test_fields.py`` fails if a field of the schema has no entry here and
is not named in :data:`INTERPRETED_ONLY`.

Formats are chosen so that SQL can produce exactly what Python produces: enum values are stored
FHIR codes whose GraphQL name is the code upper-cased with ``-`` as ``_`` (``checked-in`` ->
``CHECKED_IN``), instants are ISO 8601 in UTC, ids and cursors are unpadded base64url.
"""

from __future__ import annotations

import dataclasses
import enum

from sqlalchemy import Table

from hms.models.tables import appointment, encounter, hospital, patient, practitioner
from hms.persistence import appointments, encounters
from hms.persistence.pages import SortKey
from hms.persistence.queries import Filtered


class Kind(enum.Enum):
    VALUE = "value"  # text, int, boolean, date: JSON renders them as Python does
    ENUM = "enum"  # a stored FHIR code, rendered as its GraphQL enum name
    DATETIME = "datetime"  # timestamptz, rendered as datetime.isoformat() in UTC
    NODE_ID = "node_id"  # the row's id as a Relay global id of the object's type


@dataclasses.dataclass(frozen=True)
class Leaf:
    column: str
    kind: Kind = Kind.VALUE


@dataclasses.dataclass(frozen=True)
class ToOne:
    """The object of ``type_name`` whose id is this row's ``column`` (null when the column is)."""

    type_name: str
    column: str


@dataclasses.dataclass(frozen=True)
class Children:
    """A connection of ``type_name`` rows whose ``parent_column`` is this row's id."""

    type_name: str
    parent_column: str
    key: SortKey
    scope: str  # the cursor scope
    filtered: Filtered


FieldMap = Leaf | ToOne | Children


@dataclasses.dataclass(frozen=True)
class ObjectMap:
    table: Table
    fields: dict[str, FieldMap]
    #: The column naming the patient whose data a row is (for the audit trail), if any.
    patient: str | None = None


# Cursor scopes of nested connections (the root ones depend on their order; see lists.py).
PATIENT_APPOINTMENTS = "patient.appointments"
PATIENT_ENCOUNTERS = "patient.encounters"
PRACTITIONER_APPOINTMENTS = "practitioner.appointments"

ID = Leaf("id", Kind.NODE_ID)

OBJECTS: dict[str, ObjectMap] = {
    "Hospital": ObjectMap(
        hospital,
        {"id": ID, "slug": Leaf("slug"), "name": Leaf("name"), "timezone": Leaf("timezone")},
    ),
    "Patient": ObjectMap(
        patient,
        {
            "id": ID,
            "mrn": Leaf("mrn"),
            "givenName": Leaf("given_name"),
            "familyName": Leaf("family_name"),
            "birthDate": Leaf("birth_date"),
            "gender": Leaf("gender", Kind.ENUM),
            "phone": Leaf("phone"),
            "email": Leaf("email"),
            "nationalIdLast4": Leaf("national_id_last4"),
            "active": Leaf("active"),
            "confidential": Leaf("confidential"),
            "createdAt": Leaf("created_at", Kind.DATETIME),
            "updatedAt": Leaf("updated_at", Kind.DATETIME),
            "version": Leaf("version"),
            "appointments": Children(
                "Appointment",
                "patient_id",
                appointments.PATIENT_KEY,
                PATIENT_APPOINTMENTS,
                appointments.APPOINTMENTS,
            ),
            "encounters": Children(
                "Encounter",
                "patient_id",
                encounters.KEY,
                PATIENT_ENCOUNTERS,
                encounters.ENCOUNTERS,
            ),
        },
        patient="id",
    ),
    "Practitioner": ObjectMap(
        practitioner,
        {
            "id": ID,
            "givenName": Leaf("given_name"),
            "familyName": Leaf("family_name"),
            "specialty": Leaf("specialty"),
            "active": Leaf("active"),
            "appointments": Children(
                "Appointment",
                "practitioner_id",
                appointments.PRACTITIONER_KEY,
                PRACTITIONER_APPOINTMENTS,
                appointments.APPOINTMENTS,
            ),
        },
    ),
    "Appointment": ObjectMap(
        appointment,
        {
            "id": ID,
            "status": Leaf("status", Kind.ENUM),
            "startAt": Leaf("start_at", Kind.DATETIME),
            "endAt": Leaf("end_at", Kind.DATETIME),
            "reason": Leaf("reason"),
            "cancellationReason": Leaf("cancellation_reason"),
            "confidential": Leaf("confidential"),
            "createdAt": Leaf("created_at", Kind.DATETIME),
            "updatedAt": Leaf("updated_at", Kind.DATETIME),
            "version": Leaf("version"),
            "patient": ToOne("Patient", "patient_id"),
            "practitioner": ToOne("Practitioner", "practitioner_id"),
        },
        patient="patient_id",
    ),
    "Encounter": ObjectMap(
        encounter,
        {
            "id": ID,
            "status": Leaf("status", Kind.ENUM),
            "class": Leaf("class_", Kind.ENUM),
            "periodStart": Leaf("period_start", Kind.DATETIME),
            "periodEnd": Leaf("period_end", Kind.DATETIME),
            "reason": Leaf("reason"),
            "confidential": Leaf("confidential"),
            "createdAt": Leaf("created_at", Kind.DATETIME),
            "updatedAt": Leaf("updated_at", Kind.DATETIME),
            "version": Leaf("version"),
            "patient": ToOne("Patient", "patient_id"),
            "practitioner": ToOne("Practitioner", "practitioner_id"),
            "appointment": ToOne("Appointment", "appointment_id"),
        },
        patient="patient_id",
    ),
}

#: (type, field) pairs deliberately left to the interpreted path, with the reason.
INTERPRETED_ONLY: dict[tuple[str, str], str] = {
    ("Query", "auditTrail"): "auditors' reads of the audit trail: rare, and not patient data",
    ("Query", "emergencyGrants"): "the review of break-the-glass grants: rare, auditors only",
    ("Query", "report"): "a report's status, polled now and then; one small row, no patient data",
    ("Patient", "visitSummary"): (
        "the clinical job's row keyed by the patient (patient_visit_summary), not a ToOne by id;"
        " the interpreted path reads a request's summaries in one batched statement"
    ),
}


def children(type_name: str, field: str) -> Children:
    found = OBJECTS[type_name].fields[field]
    assert isinstance(found, Children), (type_name, field)
    return found


def enum_name(code: str) -> str:
    """A stored FHIR code as its GraphQL enum name: ``checked-in`` -> ``CHECKED_IN``."""
    return code.upper().replace("-", "_")
