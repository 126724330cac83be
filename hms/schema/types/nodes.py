"""The object types behind ``Node``: Patient, Practitioner, Appointment, Encounter, Hospital.

They live in one module because they reference each other both ways (a patient's appointments,
an appointment's patient). Each wraps a database row: plain fields are copied once when the object
is built, so they resolve without per-field Python work; relations go through the request's
DataLoaders.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import strawberry

from hms.context import Context
from hms.resolvers import patients as patient_resolvers
from hms.resolvers import scheduling
from hms.resolvers.pagination import PageArgs
from hms.resolvers.relay import to_global_id
from hms.schema.types.connection import Connection, connection
from hms.schema.types.enums import AppointmentStatus, EncounterClass, EncounterStatus, Gender
from hms.schema.types.inputs import AppointmentFilter, EncounterFilter

Info = strawberry.Info[Context, None]


@strawberry.interface(description="An object with a globally unique, opaque id (Relay).")
class Node:
    id: strawberry.ID


@strawberry.type
class Hospital(Node):
    slug: str
    name: str
    timezone: str

    @classmethod
    def from_row(cls, row: Any) -> Hospital:
        return cls(
            id=strawberry.ID(to_global_id("Hospital", row.id)),
            slug=row.slug,
            name=row.name,
            timezone=row.timezone,
        )


@strawberry.type
class Patient(Node):
    pk: strawberry.Private[uuid.UUID]
    mrn: str = strawberry.field(description="Medical record number, unique per hospital.")
    given_name: str
    family_name: str
    birth_date: dt.date | None
    gender: Gender
    active: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int

    @classmethod
    def from_row(cls, row: Any) -> Patient:
        return cls(
            id=strawberry.ID(to_global_id("Patient", row.id)),
            pk=row.id,
            mrn=row.mrn,
            given_name=row.given_name,
            family_name=row.family_name,
            birth_date=row.birth_date,
            gender=Gender(row.gender),
            active=row.active,
            created_at=row.created_at,
            updated_at=row.updated_at,
            version=row.version,
        )

    @strawberry.field(description="Newest first.")
    async def appointments(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: AppointmentFilter | None = None,
    ) -> Connection[Appointment]:
        page = await patient_resolvers.appointments_of(
            info.context,
            self.pk,
            PageArgs(first=first, after=after),
            None if filter is None else filter.to_filter(),
        )
        return connection(page, Appointment.from_row)

    @strawberry.field(description="Newest first.")
    async def encounters(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: EncounterFilter | None = None,
    ) -> Connection[Encounter]:
        page = await patient_resolvers.encounters_of(
            info.context,
            self.pk,
            PageArgs(first=first, after=after),
            None if filter is None else filter.to_filter(),
        )
        return connection(page, Encounter.from_row)


@strawberry.type
class Practitioner(Node):
    pk: strawberry.Private[uuid.UUID]
    given_name: str
    family_name: str
    specialty: str
    active: bool

    @classmethod
    def from_row(cls, row: Any) -> Practitioner:
        return cls(
            id=strawberry.ID(to_global_id("Practitioner", row.id)),
            pk=row.id,
            given_name=row.given_name,
            family_name=row.family_name,
            specialty=row.specialty,
            active=row.active,
        )

    @strawberry.field(description="In time order (the practitioner's schedule).")
    async def appointments(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: AppointmentFilter | None = None,
    ) -> Connection[Appointment]:
        page = await scheduling.appointments_of_practitioner(
            info.context,
            self.pk,
            PageArgs(first=first, after=after),
            None if filter is None else filter.to_filter(),
        )
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
    reason: str | None
    cancellation_reason: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int

    @classmethod
    def from_row(cls, row: Any) -> Appointment:
        return cls(
            id=strawberry.ID(to_global_id("Appointment", row.id)),
            pk=row.id,
            patient_pk=row.patient_id,
            practitioner_pk=row.practitioner_id,
            status=AppointmentStatus(row.status),
            start_at=row.start_at,
            end_at=row.end_at,
            reason=row.reason,
            cancellation_reason=row.cancellation_reason,
            created_at=row.created_at,
            updated_at=row.updated_at,
            version=row.version,
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
    reason: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int

    @classmethod
    def from_row(cls, row: Any) -> Encounter:
        return cls(
            id=strawberry.ID(to_global_id("Encounter", row.id)),
            pk=row.id,
            patient_pk=row.patient_id,
            practitioner_pk=row.practitioner_id,
            appointment_pk=row.appointment_id,
            status=EncounterStatus(row.status),
            class_=EncounterClass(row.class_),
            period_start=row.period_start,
            period_end=row.period_end,
            reason=row.reason,
            created_at=row.created_at,
            updated_at=row.updated_at,
            version=row.version,
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


NODE_TYPES: dict[str, Any] = {
    "Patient": Patient,
    "Practitioner": Practitioner,
    "Appointment": Appointment,
    "Encounter": Encounter,
    "Hospital": Hospital,
}
