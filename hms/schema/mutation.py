"""The root Mutation type (DESIGN §5).

Each field is atomic on its own (a savepoint inside the request's transaction): in a document
with several mutation fields, which GraphQL runs one after another, a field that fails with
``userErrors`` leaves nothing behind and does not undo the fields before it. An unexpected error
rolls back the whole request.

Roles: :data:`hms.security.policy.WRITES` says who runs which mutation; a caller who may not
gets the payload with a ``FORBIDDEN`` user error and nothing runs (:class:`WriteGuard`).
"""

from __future__ import annotations

import strawberry

from hms.resolvers import appointment_mutations as appointments
from hms.resolvers import emergency, reports
from hms.resolvers import encounter_mutations as encounters
from hms.resolvers import patient_mutations as patients
from hms.resolvers.outcomes import Outcome, Problem, input_field
from hms.schema.directives import MUTATION
from hms.schema.guards import WriteGuard
from hms.schema.types.mutations import (
    CancelAppointmentInput,
    CancelAppointmentPayload,
    CreatePatientInput,
    CreatePatientPayload,
    OpenEmergencyAccessInput,
    OpenEmergencyAccessPayload,
    RecordEncounterInput,
    RecordEncounterPayload,
    RequestReportInput,
    RequestReportPayload,
    RescheduleAppointmentInput,
    RescheduleAppointmentPayload,
    RevealNationalIdInput,
    RevealNationalIdPayload,
    ScheduleAppointmentInput,
    ScheduleAppointmentPayload,
    SetAppointmentStatusInput,
    SetAppointmentStatusPayload,
    UpdatePatientInput,
    UpdatePatientPayload,
)
from hms.schema.types.nodes import Info
from hms.security import policy


def _label_refusal() -> Problem:
    roles = ", ".join(sorted(policy.LABELERS))
    return Problem(
        input_field("confidential"),
        f"Your role may not mark records confidential or lift the mark (roles that may: {roles})",
        "FORBIDDEN",
    )


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Register a patient; the MRN must be new in the hospital.",
        directives=[MUTATION],
        extensions=[WriteGuard()],
    )
    async def create_patient(self, info: Info, input: CreatePatientInput) -> CreatePatientPayload:
        fields = input.fields()
        if fields.get("confidential") and not policy.may_label(info.context.principal.roles):
            return CreatePatientPayload.of(Outcome.failed(_label_refusal()))
        return CreatePatientPayload.of(await patients.create_patient(info.context, fields))

    @strawberry.mutation(
        description="Change a patient at expectedVersion; the version moves.",
        directives=[MUTATION],
        extensions=[WriteGuard()],
    )
    async def update_patient(self, info: Info, input: UpdatePatientInput) -> UpdatePatientPayload:
        changes = input.changes()
        if "confidential" in changes and not policy.may_label(info.context.principal.roles):
            return UpdatePatientPayload.of(Outcome.failed(_label_refusal()))
        outcome = await patients.update_patient(
            info.context, input.id, input.expected_version, changes
        )
        return UpdatePatientPayload.of(outcome)

    @strawberry.mutation(
        description="Book a slot; an overlapping active booking is SLOT_TAKEN.",
        directives=[MUTATION],
        extensions=[WriteGuard()],
    )
    async def schedule_appointment(
        self, info: Info, input: ScheduleAppointmentInput
    ) -> ScheduleAppointmentPayload:
        outcome = await appointments.schedule(
            info.context,
            patient_id=input.patient_id,
            practitioner_id=input.practitioner_id,
            start_at=input.start_at,
            end_at=input.end_at,
            status=input.status.value,
            reason=input.reason,
        )
        return ScheduleAppointmentPayload.of(outcome)

    @strawberry.mutation(
        description="Move an appointment that has not started yet.",
        directives=[MUTATION],
        extensions=[WriteGuard()],
    )
    async def reschedule_appointment(
        self, info: Info, input: RescheduleAppointmentInput
    ) -> RescheduleAppointmentPayload:
        outcome = await appointments.reschedule(
            info.context,
            input.id,
            expected_version=input.expected_version,
            start_at=input.start_at,
            end_at=input.end_at,
        )
        return RescheduleAppointmentPayload.of(outcome)

    @strawberry.mutation(
        description="Cancel with a reason; frees the slot.",
        directives=[MUTATION],
        extensions=[WriteGuard()],
    )
    async def cancel_appointment(
        self, info: Info, input: CancelAppointmentInput
    ) -> CancelAppointmentPayload:
        outcome = await appointments.cancel(
            info.context, input.id, reason=input.reason, expected_version=input.expected_version
        )
        return CancelAppointmentPayload.of(outcome)

    @strawberry.mutation(
        description="Move along the FHIR workflow (not to CANCELLED).",
        directives=[MUTATION],
        extensions=[WriteGuard()],
    )
    async def set_appointment_status(
        self, info: Info, input: SetAppointmentStatusInput
    ) -> SetAppointmentStatusPayload:
        outcome = await appointments.set_status(
            info.context,
            input.id,
            status=input.status.value,
            expected_version=input.expected_version,
        )
        return SetAppointmentStatusPayload.of(outcome)

    @strawberry.mutation(
        description="Record an encounter, optionally for an appointment.",
        directives=[MUTATION],
        extensions=[WriteGuard()],
    )
    async def record_encounter(
        self, info: Info, input: RecordEncounterInput
    ) -> RecordEncounterPayload:
        outcome = await encounters.record_encounter(
            info.context,
            patient_id=input.patient_id,
            practitioner_id=input.practitioner_id,
            appointment_id=input.appointment_id,
            class_=input.class_.value,
            status=input.status.value,
            period_start=input.period_start,
            period_end=input.period_end,
            reason=input.reason,
        )
        return RecordEncounterPayload.of(outcome)

    @strawberry.mutation(
        description=(
            "Break the glass: open time-boxed access to a confidential patient's clinical and"
            " sensitive fields, with a reason (clinicians). Reads under it are audited with"
            " purpose ETREAT and listed for review (emergencyGrants)."
        ),
        directives=[MUTATION],
        extensions=[WriteGuard()],
    )
    async def open_emergency_access(
        self, info: Info, input: OpenEmergencyAccessInput
    ) -> OpenEmergencyAccessPayload:
        outcome = await emergency.open_emergency_access(
            info.context, input.patient_id, input.reason, input.minutes
        )
        return OpenEmergencyAccessPayload.of(outcome)

    @strawberry.mutation(
        description=(
            "The patient's full national id, with a reason that goes into the audit trail"
            " (administrators and clinicians; for a confidential patient, under an open"
            " emergency grant)."
        ),
        directives=[MUTATION],
        extensions=[WriteGuard()],
    )
    async def reveal_national_id(
        self, info: Info, input: RevealNationalIdInput
    ) -> RevealNationalIdPayload:
        outcome = await emergency.reveal_national_id(info.context, input.patient_id, input.reason)
        return RevealNationalIdPayload.of(outcome)

    @strawberry.mutation(
        description=(
            "Ask for a CSV export of the hospital's appointments or encounters that start in"
            " [from, to), at most 366 days (administrators and clinicians). A background job"
            " writes it: poll report(id) until READY, then GET its downloadUrl."
        ),
        directives=[MUTATION],
        extensions=[WriteGuard()],
    )
    async def request_report(self, info: Info, input: RequestReportInput) -> RequestReportPayload:
        outcome = await reports.request_report(
            info.context, kind=input.kind.value, start=input.from_, end=input.to
        )
        return RequestReportPayload.of(outcome)
