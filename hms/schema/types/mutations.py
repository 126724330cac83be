"""Mutation inputs and payloads (DESIGN §5): one ``input`` object in, the object plus
``userErrors`` out. Domain failures are ``userErrors`` with stable codes, never GraphQL errors.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import strawberry

from hms.resolvers.outcomes import Outcome
from hms.resolvers.relay import to_global_id
from hms.schema.guards import phi
from hms.schema.types.enums import (
    AppointmentStatus,
    EncounterClass,
    EncounterStatus,
    Gender,
    ReportKind,
)
from hms.schema.types.nodes import Appointment, Encounter, Patient, Report
from hms.security.policy import FieldClass


@strawberry.enum(description="Stable codes of domain failures; clients branch on these.")
class UserErrorCode(enum.Enum):
    NOT_FOUND = "NOT_FOUND"
    VALIDATION = "VALIDATION"
    SLOT_TAKEN = "SLOT_TAKEN"
    VERSION_CONFLICT = "VERSION_CONFLICT"
    FORBIDDEN = "FORBIDDEN"
    UNAVAILABLE = "UNAVAILABLE"


@strawberry.type(description="A domain failure of a mutation, pointing at the input field.")
class UserError:
    field: list[str] | None = strawberry.field(
        description='Path to the offending input field, e.g. ["input", "mrn"].'
    )
    message: str
    code: UserErrorCode
    current_version: int | None = strawberry.field(
        default=None, description="With VERSION_CONFLICT: the record's current version."
    )


def user_errors(outcome: Outcome) -> list[UserError]:
    return [
        UserError(
            field=None if p.field is None else list(p.field),
            message=p.message,
            code=UserErrorCode(p.code),
            current_version=p.current_version,
        )
        for p in outcome.problems
    ]


def _given(**fields: Any) -> dict[str, Any]:
    """The fields the caller set (UNSET ones dropped), enums as their stored codes."""
    return {
        name: value.value if isinstance(value, enum.Enum) else value
        for name, value in fields.items()
        if value is not strawberry.UNSET
    }


@strawberry.input
class CreatePatientInput:
    mrn: str
    given_name: str
    family_name: str
    birth_date: dt.date | None = None
    gender: Gender = Gender.UNKNOWN
    phone: str | None = None
    email: str | None = None
    active: bool = True
    national_id: str | None = strawberry.field(
        default=strawberry.UNSET,
        description="The full national id: stored encrypted; only its last four digits read.",
    )
    confidential: bool = strawberry.field(
        default=False,
        description="Mark the record confidential (administrators and clinicians only).",
    )

    def fields(self) -> dict[str, Any]:
        return _given(
            mrn=self.mrn,
            givenName=self.given_name,
            familyName=self.family_name,
            birthDate=self.birth_date,
            gender=self.gender,
            phone=self.phone,
            email=self.email,
            active=self.active,
            nationalId=self.national_id,
            confidential=self.confidential,
        )


@strawberry.input(
    description="Only the fields given change; null clears birthDate/phone/email/nationalId."
)
class UpdatePatientInput:
    id: strawberry.ID
    expected_version: int
    mrn: str | None = strawberry.UNSET
    given_name: str | None = strawberry.UNSET
    family_name: str | None = strawberry.UNSET
    birth_date: dt.date | None = strawberry.UNSET
    gender: Gender | None = strawberry.UNSET
    phone: str | None = strawberry.UNSET
    email: str | None = strawberry.UNSET
    active: bool | None = strawberry.UNSET
    national_id: str | None = strawberry.UNSET
    confidential: bool | None = strawberry.field(
        default=strawberry.UNSET,
        description="Mark or unmark the record confidential (administrators and clinicians only).",
    )

    def changes(self) -> dict[str, Any]:
        return _given(
            mrn=self.mrn,
            givenName=self.given_name,
            familyName=self.family_name,
            birthDate=self.birth_date,
            gender=self.gender,
            phone=self.phone,
            email=self.email,
            active=self.active,
            nationalId=self.national_id,
            confidential=self.confidential,
        )


@strawberry.input
class ScheduleAppointmentInput:
    patient_id: strawberry.ID
    practitioner_id: strawberry.ID
    start_at: dt.datetime
    end_at: dt.datetime
    reason: str | None = None
    status: AppointmentStatus = strawberry.field(
        default=AppointmentStatus.BOOKED,
        description="PROPOSED, PENDING, BOOKED (default) or WAITLIST.",
    )


@strawberry.input
class RescheduleAppointmentInput:
    id: strawberry.ID
    expected_version: int
    start_at: dt.datetime
    end_at: dt.datetime


@strawberry.input
class CancelAppointmentInput:
    id: strawberry.ID
    reason: str
    expected_version: int | None = None


@strawberry.input
class SetAppointmentStatusInput:
    id: strawberry.ID
    status: AppointmentStatus
    expected_version: int


@strawberry.input
class RecordEncounterInput:
    patient_id: strawberry.ID
    class_: EncounterClass = strawberry.field(name="class")
    status: EncounterStatus
    period_start: dt.datetime
    practitioner_id: strawberry.ID | None = None
    appointment_id: strawberry.ID | None = None
    period_end: dt.datetime | None = None
    reason: str | None = None


def _patient(outcome: Outcome) -> Patient | None:
    return None if outcome.row is None else Patient.from_row(outcome.row)


def _appointment(outcome: Outcome) -> Appointment | None:
    return None if outcome.row is None else Appointment.from_row(outcome.row)


@strawberry.type
class CreatePatientPayload:
    patient: Patient | None
    user_errors: list[UserError]

    @classmethod
    def of(cls, outcome: Outcome) -> CreatePatientPayload:
        return cls(patient=_patient(outcome), user_errors=user_errors(outcome))


@strawberry.type
class UpdatePatientPayload:
    patient: Patient | None
    user_errors: list[UserError]

    @classmethod
    def of(cls, outcome: Outcome) -> UpdatePatientPayload:
        return cls(patient=_patient(outcome), user_errors=user_errors(outcome))


@strawberry.type
class ScheduleAppointmentPayload:
    appointment: Appointment | None
    user_errors: list[UserError]

    @classmethod
    def of(cls, outcome: Outcome) -> ScheduleAppointmentPayload:
        return cls(appointment=_appointment(outcome), user_errors=user_errors(outcome))


@strawberry.type
class RescheduleAppointmentPayload:
    appointment: Appointment | None
    user_errors: list[UserError]

    @classmethod
    def of(cls, outcome: Outcome) -> RescheduleAppointmentPayload:
        return cls(appointment=_appointment(outcome), user_errors=user_errors(outcome))


@strawberry.type
class CancelAppointmentPayload:
    appointment: Appointment | None
    user_errors: list[UserError]

    @classmethod
    def of(cls, outcome: Outcome) -> CancelAppointmentPayload:
        return cls(appointment=_appointment(outcome), user_errors=user_errors(outcome))


@strawberry.type
class SetAppointmentStatusPayload:
    appointment: Appointment | None
    user_errors: list[UserError]

    @classmethod
    def of(cls, outcome: Outcome) -> SetAppointmentStatusPayload:
        return cls(appointment=_appointment(outcome), user_errors=user_errors(outcome))


@strawberry.type
class RecordEncounterPayload:
    encounter: Encounter | None
    user_errors: list[UserError]

    @classmethod
    def of(cls, outcome: Outcome) -> RecordEncounterPayload:
        encounter = None if outcome.row is None else Encounter.from_row(outcome.row)
        return cls(encounter=encounter, user_errors=user_errors(outcome))


@strawberry.input
class OpenEmergencyAccessInput:
    patient_id: strawberry.ID
    reason: str = strawberry.field(
        description="Why you need the record now (10 to 500 characters); reviewed later."
    )
    minutes: int = strawberry.field(
        default=60, description="How long the grant stays open: 1 to 720 minutes."
    )


@strawberry.type(description="A clinician's time-boxed access to a confidential record.")
class EmergencyGrant:
    id: strawberry.ID
    patient_id: strawberry.ID
    user_id: str
    reason: str
    opened_at: dt.datetime
    expires_at: dt.datetime

    @classmethod
    def from_row(cls, row: Any) -> EmergencyGrant:
        return cls(
            id=strawberry.ID(str(row.id)),
            patient_id=strawberry.ID(to_global_id("Patient", row.patient_id)),
            user_id=row.subject,
            reason=row.reason,
            opened_at=row.opened_at,
            expires_at=row.expires_at,
        )


@strawberry.type
class OpenEmergencyAccessPayload:
    grant: EmergencyGrant | None
    user_errors: list[UserError]

    @classmethod
    def of(cls, outcome: Outcome) -> OpenEmergencyAccessPayload:
        grant = None if outcome.row is None else EmergencyGrant.from_row(outcome.row)
        return cls(grant=grant, user_errors=user_errors(outcome))


@strawberry.input
class RevealNationalIdInput:
    patient_id: strawberry.ID
    reason: str = strawberry.field(
        description="Why you need the full national id (10 to 500 characters); audited."
    )


@strawberry.type
class RevealNationalIdPayload:
    national_id: str | None = phi(
        FieldClass.SENSITIVE,
        description="The full national id; null when none is on record or with userErrors.",
    )
    user_errors: list[UserError]

    @classmethod
    def of(cls, outcome: Outcome) -> RevealNationalIdPayload:
        return cls(national_id=outcome.row, user_errors=user_errors(outcome))


@strawberry.input
class RequestReportInput:
    kind: ReportKind
    from_: dt.datetime = strawberry.field(name="from", description="Start of the range, inclusive.")
    to: dt.datetime = strawberry.field(
        description="End of the range, exclusive; at most 366 days after from."
    )


@strawberry.type
class RequestReportPayload:
    report: Report | None = strawberry.field(
        description="The queued report: poll report(id) until it is READY."
    )
    user_errors: list[UserError]

    @classmethod
    def of(cls, outcome: Outcome) -> RequestReportPayload:
        report = None if outcome.row is None else Report.from_row(outcome.row)
        return cls(report=report, user_errors=user_errors(outcome))
