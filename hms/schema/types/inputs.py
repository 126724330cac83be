"""Filter and order inputs; each converts itself to the persistence layer's plain filter."""

from __future__ import annotations

import datetime as dt

import strawberry

from hms.persistence import filters
from hms.resolvers.relay import expect_global_id
from hms.resolvers.validation import MAX_NAME, bounded
from hms.schema.types.enums import (
    AppointmentOrderField,
    AppointmentStatus,
    EncounterClass,
    EncounterStatus,
    Gender,
    OrderDirection,
    PatientOrderField,
)


@strawberry.input(description="Patients matching every given field.")
class PatientFilter:
    active: bool | None = None
    name_prefix: str | None = strawberry.field(
        default=None, description="Case-insensitive prefix of the family or given name."
    )
    created_from: dt.datetime | None = strawberry.field(
        default=None, description="Created at or after this instant."
    )
    created_to: dt.datetime | None = strawberry.field(
        default=None, description="Created before this instant."
    )
    gender: Gender | None = None

    def to_filter(self) -> filters.PatientFilter:
        return filters.PatientFilter(
            active=self.active,
            name_prefix=bounded("filter.namePrefix", self.name_prefix, MAX_NAME),
            created_from=self.created_from,
            created_to=self.created_to,
            gender=None if self.gender is None else self.gender.value,
        )


@strawberry.input
class PatientOrder:
    field: PatientOrderField = PatientOrderField.NAME
    direction: OrderDirection = OrderDirection.ASC


@strawberry.input(description="Appointments matching every given field.")
class AppointmentFilter:
    start_from: dt.datetime | None = strawberry.field(
        default=None, description="Starting at or after this instant."
    )
    start_to: dt.datetime | None = strawberry.field(
        default=None, description="Starting before this instant."
    )
    status: list[AppointmentStatus] | None = strawberry.field(
        default=None, description="Any of these statuses."
    )
    practitioner_id: strawberry.ID | None = None
    patient_id: strawberry.ID | None = None

    def to_filter(self) -> filters.AppointmentFilter:
        return filters.AppointmentFilter(
            start_from=self.start_from,
            start_to=self.start_to,
            statuses=None if self.status is None else tuple(s.value for s in self.status),
            practitioner_id=None
            if self.practitioner_id is None
            else expect_global_id(self.practitioner_id, "Practitioner"),
            patient_id=None
            if self.patient_id is None
            else expect_global_id(self.patient_id, "Patient"),
        )


@strawberry.input
class AppointmentOrder:
    field: AppointmentOrderField = AppointmentOrderField.START_AT
    direction: OrderDirection = OrderDirection.ASC


@strawberry.input(description="Encounters matching every given field.")
class EncounterFilter:
    period_from: dt.datetime | None = strawberry.field(
        default=None, description="Starting at or after this instant."
    )
    period_to: dt.datetime | None = strawberry.field(
        default=None, description="Starting before this instant."
    )
    class_: list[EncounterClass] | None = strawberry.field(
        default=None, name="class", description="Any of these classes."
    )
    status: list[EncounterStatus] | None = strawberry.field(
        default=None, description="Any of these statuses."
    )
    patient_id: strawberry.ID | None = None
    practitioner_id: strawberry.ID | None = None

    def to_filter(self) -> filters.EncounterFilter:
        return filters.EncounterFilter(
            period_from=self.period_from,
            period_to=self.period_to,
            classes=None if self.class_ is None else tuple(c.value for c in self.class_),
            statuses=None if self.status is None else tuple(s.value for s in self.status),
            patient_id=None
            if self.patient_id is None
            else expect_global_id(self.patient_id, "Patient"),
            practitioner_id=None
            if self.practitioner_id is None
            else expect_global_id(self.practitioner_id, "Practitioner"),
        )


@strawberry.input(description="Practitioners matching every given field.")
class PractitionerFilter:
    active: bool | None = None
    specialty: str | None = None
    name_prefix: str | None = strawberry.field(
        default=None, description="Case-insensitive prefix of the family or given name."
    )

    def to_filter(self) -> filters.PractitionerFilter:
        return filters.PractitionerFilter(
            active=self.active,
            specialty=bounded("filter.specialty", self.specialty, MAX_NAME),
            name_prefix=bounded("filter.namePrefix", self.name_prefix, MAX_NAME),
        )
