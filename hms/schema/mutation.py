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
from hms.resolvers import encounter_mutations as encounters
from hms.resolvers import patient_mutations as patients
from hms.schema.directives import MUTATION
from hms.schema.guards import WriteGuard
from hms.schema.types.mutations import (
    CancelAppointmentInput,
    CancelAppointmentPayload,
    CreatePatientInput,
    CreatePatientPayload,
    RecordEncounterInput,
    RecordEncounterPayload,
    RescheduleAppointmentInput,
    RescheduleAppointmentPayload,
    ScheduleAppointmentInput,
    ScheduleAppointmentPayload,
    SetAppointmentStatusInput,
    SetAppointmentStatusPayload,
    UpdatePatientInput,
    UpdatePatientPayload,
)
from hms.schema.types.nodes import Info


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Register a patient; the MRN must be new in the hospital.",
        directives=[MUTATION],
        extensions=[WriteGuard()],
    )
    async def create_patient(self, info: Info, input: CreatePatientInput) -> CreatePatientPayload:
        return CreatePatientPayload.of(await patients.create_patient(info.context, input.fields()))

    @strawberry.mutation(
        description="Change a patient at expectedVersion; the version moves.",
        directives=[MUTATION],
        extensions=[WriteGuard()],
    )
    async def update_patient(self, info: Info, input: UpdatePatientInput) -> UpdatePatientPayload:
        outcome = await patients.update_patient(
            info.context, input.id, input.expected_version, input.changes()
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
