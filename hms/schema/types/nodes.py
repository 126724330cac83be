"""The object types behind ``Node``: Patient, Practitioner, Appointment, Encounter, Hospital,
Report.

They live in one module because they reference each other both ways (a patient's appointments,
an appointment's patient). Each wraps a database row: plain fields are copied once when the object
is built, so they resolve without per-field Python work; relations go through the request's
DataLoaders. Which column a field is, and how it is formatted, comes from
:data:`hms.resolvers.fields.OBJECTS`, the table the compiled read path writes its SQL from.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import strawberry
from strawberry.utils.str_converters import to_camel_case

from hms.context import Context, touch
from hms.resolvers import patients as patient_resolvers
from hms.resolvers import scheduling
from hms.resolvers.fields import OBJECTS, Kind, Leaf
from hms.resolvers.relay import to_global_id
from hms.resolvers.reports import download_url
from hms.schema.directives import NESTED_PAGE
from hms.schema.guards import phi
from hms.schema.types.connection import Connection, connection
from hms.schema.types.enums import (
    AppointmentStatus,
    EncounterClass,
    EncounterStatus,
    Gender,
    ReportKind,
    ReportStatus,
)
from hms.schema.types.inputs import AppointmentFilter, EncounterFilter
from hms.schema.types.visits import VISIT_SUMMARY, VisitSummary
from hms.security.policy import FieldClass

Info = strawberry.Info[Context, None]

CONFIDENTIAL = (
    "A confidential record: the patient's clinical and sensitive fields, here and on their"
    " appointments and encounters, are shown only under an open emergency grant"
    " (openEmergencyAccess)."
)


class RowCopy:
    """Copies a row's leaf fields into a strawberry object, as ``OBJECTS[type_name]`` maps them.

    Built on first use (the strawberry types must be complete): for each leaf, the Python
    attribute, the row attribute and how to convert it (a global id, an enum member).
    """

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name
        self._plan: list[tuple[str, str, Any]] | None = None
        self._patient: str | None = None

    def _build(self, cls: type) -> list[tuple[str, str, Any]]:
        leaves = OBJECTS[self.type_name].fields
        plan = []
        for field in cls.__strawberry_definition__.fields:  # type: ignore[attr-defined]
            name = field.graphql_name or to_camel_case(field.python_name)
            leaf = leaves.get(name)
            if not isinstance(leaf, Leaf):
                continue
            convert: Any = None
            if leaf.kind is Kind.NODE_ID:
                type_name = self.type_name
                convert = lambda pk, t=type_name: strawberry.ID(to_global_id(t, pk))  # noqa: E731
            elif leaf.kind is Kind.ENUM:
                kind = field.type
                convert = getattr(kind, "of_type", kind).wrapped_cls
            plan.append((field.python_name, leaf.column, convert))
        return plan

    def __call__(self, cls: type, row: Any, **private: Any) -> dict[str, Any]:
        if self._plan is None:
            self._plan = self._build(cls)
            self._patient = OBJECTS[self.type_name].patient
        if self._patient is not None:
            touch(getattr(row, self._patient))  # a read of this patient's data: audited
        values = dict(private)
        for python_name, column, convert in self._plan:
            value = getattr(row, column)
            values[python_name] = value if convert is None or value is None else convert(value)
        return values


@strawberry.interface(description="An object with a globally unique, opaque id (Relay).")
class Node:
    id: strawberry.ID


_HOSPITAL = RowCopy("Hospital")
_PATIENT = RowCopy("Patient")
_PRACTITIONER = RowCopy("Practitioner")
_APPOINTMENT = RowCopy("Appointment")
_ENCOUNTER = RowCopy("Encounter")


@strawberry.type
class Hospital(Node):
    slug: str
    name: str
    timezone: str

    @classmethod
    def from_row(cls, row: Any) -> Hospital:
        return cls(**_HOSPITAL(cls, row))


@strawberry.type
class Patient(Node):
    pk: strawberry.Private[uuid.UUID]
    mrn: str = phi(
        FieldClass.DEMOGRAPHIC, description="Medical record number, unique per hospital."
    )
    given_name: str = phi(FieldClass.DEMOGRAPHIC)
    family_name: str = phi(FieldClass.DEMOGRAPHIC)
    birth_date: dt.date | None = phi(FieldClass.SENSITIVE)
    gender: Gender = phi(FieldClass.DEMOGRAPHIC)
    phone: str | None = phi(FieldClass.CONTACT)
    email: str | None = phi(FieldClass.CONTACT)
    national_id_last4: str | None = phi(
        FieldClass.SENSITIVE,
        description="The last four digits of the national id; the full value is never shown.",
    )
    active: bool = phi(FieldClass.DEMOGRAPHIC)
    confidential: bool = strawberry.field(description=CONFIDENTIAL)
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int

    @classmethod
    def from_row(cls, row: Any) -> Patient:
        return cls(**_PATIENT(cls, row, pk=row.id))

    @strawberry.field(description="Newest first.", directives=[NESTED_PAGE])
    async def appointments(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: AppointmentFilter | None = None,
    ) -> Connection[Appointment]:
        args = {"first": first, "after": after, "filter": filter}
        page = await patient_resolvers.appointments_of(info.context, self.pk, args)
        return connection(page, Appointment.from_row)

    @strawberry.field(description="Newest first.", directives=[NESTED_PAGE])
    async def encounters(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: EncounterFilter | None = None,
    ) -> Connection[Encounter]:
        args = {"first": first, "after": after, "filter": filter}
        page = await patient_resolvers.encounters_of(info.context, self.pk, args)
        return connection(page, Encounter.from_row)

    # Dates and counts of visits tell when someone was treated: clinical, hidden on a
    # confidential record as its other clinical fields are.
    @phi(FieldClass.CLINICAL, description=VISIT_SUMMARY)
    async def visit_summary(self, info: Info) -> VisitSummary | None:
        row = await patient_resolvers.visit_summary_of(info.context, self.pk)
        return None if row is None else VisitSummary.from_row(row)


@strawberry.type
class Practitioner(Node):
    pk: strawberry.Private[uuid.UUID]
    given_name: str
    family_name: str
    specialty: str
    active: bool

    @classmethod
    def from_row(cls, row: Any) -> Practitioner:
        return cls(**_PRACTITIONER(cls, row, pk=row.id))

    @strawberry.field(
        description="In time order (the practitioner's schedule).", directives=[NESTED_PAGE]
    )
    async def appointments(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: AppointmentFilter | None = None,
    ) -> Connection[Appointment]:
        args = {"first": first, "after": after, "filter": filter}
        page = await scheduling.appointments_of_practitioner(info.context, self.pk, args)
        return connection(page, Appointment.from_row)


async def _required(loader: Any, key: uuid.UUID, what: str) -> Any:
    row = await loader.load(key)
    if row is None:  # composite foreign keys make this impossible short of corruption
        raise LookupError(f"{what} {key} is missing")
    return row


@strawberry.type
class Appointment(Node):
    pk: strawberry.Private[uuid.UUID]
    patient_pk: strawberry.Private[uuid.UUID]
    practitioner_pk: strawberry.Private[uuid.UUID]
    status: AppointmentStatus
    start_at: dt.datetime
    end_at: dt.datetime
    reason: str | None = phi(FieldClass.CLINICAL)
    cancellation_reason: str | None = phi(FieldClass.CLINICAL)
    confidential: bool = strawberry.field(description=CONFIDENTIAL)
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int

    @classmethod
    def from_row(cls, row: Any) -> Appointment:
        return cls(
            **_APPOINTMENT(
                cls, row, pk=row.id, patient_pk=row.patient_id, practitioner_pk=row.practitioner_id
            )
        )

    @strawberry.field
    async def patient(self, info: Info) -> Patient:
        row = await _required(info.context.loaders.patient_by_id, self.patient_pk, "patient")
        return Patient.from_row(row)

    @strawberry.field
    async def practitioner(self, info: Info) -> Practitioner:
        loader = info.context.loaders.practitioner_by_id
        return Practitioner.from_row(await _required(loader, self.practitioner_pk, "practitioner"))


@strawberry.type
class Encounter(Node):
    pk: strawberry.Private[uuid.UUID]
    patient_pk: strawberry.Private[uuid.UUID]
    practitioner_pk: strawberry.Private[uuid.UUID | None]
    appointment_pk: strawberry.Private[uuid.UUID | None]
    status: EncounterStatus
    class_: EncounterClass = strawberry.field(name="class")
    period_start: dt.datetime
    period_end: dt.datetime | None
    reason: str | None = phi(FieldClass.CLINICAL)
    confidential: bool = strawberry.field(description=CONFIDENTIAL)
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int

    @classmethod
    def from_row(cls, row: Any) -> Encounter:
        return cls(
            **_ENCOUNTER(
                cls,
                row,
                pk=row.id,
                patient_pk=row.patient_id,
                practitioner_pk=row.practitioner_id,
                appointment_pk=row.appointment_id,
            )
        )

    @strawberry.field
    async def patient(self, info: Info) -> Patient:
        row = await _required(info.context.loaders.patient_by_id, self.patient_pk, "patient")
        return Patient.from_row(row)

    @strawberry.field
    async def practitioner(self, info: Info) -> Practitioner | None:
        if self.practitioner_pk is None:
            return None
        row = await info.context.loaders.practitioner_by_id.load(self.practitioner_pk)
        return None if row is None else Practitioner.from_row(row)

    @strawberry.field
    async def appointment(self, info: Info) -> Appointment | None:
        if self.appointment_pk is None:
            return None
        row = await info.context.loaders.appointment_by_id.load(self.appointment_pk)
        return None if row is None else Appointment.from_row(row)


@strawberry.type(
    description=(
        "A CSV export of the hospital's appointments or encounters (requestReport), written in"
        " the background; administrators and clinicians read it."
    )
)
class Report(Node):
    kind: ReportKind
    from_: dt.datetime = strawberry.field(
        name="from",
        description="Start of the range, inclusive (an appointment's or encounter's start).",
    )
    to: dt.datetime = strawberry.field(description="End of the range, exclusive.")
    status: ReportStatus
    requested_at: dt.datetime
    finished_at: dt.datetime | None = strawberry.field(
        description="When it became READY or FAILED."
    )
    row_count: int | None = strawberry.field(description="Rows in the CSV, once READY.")
    error: str | None = strawberry.field(
        description="Why it FAILED: the kind of error that stopped its last try (never data)."
    )
    download_url: str | None = strawberry.field(
        description=(
            "Once READY: where to GET the CSV (relative to this server), with the same bearer"
            " token. Each download is audited."
        )
    )

    @classmethod
    def from_row(cls, row: Any) -> Report:
        # Built by hand, not by RowCopy: the compiled path does not read reports (it leaves
        # node() of a Report and report() to this path), so they have no field mapping.
        return cls(
            id=strawberry.ID(to_global_id("Report", row.id)),
            kind=ReportKind(row.kind),
            from_=row.range_start,
            to=row.range_end,
            status=ReportStatus(row.status),
            requested_at=row.requested_at,
            finished_at=row.finished_at,
            row_count=row.row_count,
            error=row.error,
            download_url=download_url(row),
        )


NODE_TYPES: dict[str, Any] = {
    "Patient": Patient,
    "Practitioner": Practitioner,
    "Appointment": Appointment,
    "Encounter": Encounter,
    "Hospital": Hospital,
    "Report": Report,
}
