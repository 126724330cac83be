"""Patient reads: one patient, by MRN, the stats card, a patient's nested lists and visit
summary."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from hms.context import Context
from hms.persistence import patients
from hms.resolvers.fields import children
from hms.resolvers.lists import children_of
from hms.resolvers.pagination import Page
from hms.resolvers.relay import expect_global_id
from hms.resolvers.validation import MAX_MRN, bounded


async def patient(ctx: Context, global_id: str) -> Any:
    return await ctx.loaders.patient_by_id.load(expect_global_id(global_id, "Patient"))


async def patient_by_mrn(ctx: Context, mrn: str) -> Any:
    return await ctx.loaders.patient_by_mrn.load(bounded("mrn", mrn, MAX_MRN))


async def patient_stats(ctx: Context) -> Any:
    return await patients.stats(ctx.db, ctx.now)


async def appointments_of(ctx: Context, patient_id: uuid.UUID, args: Mapping[str, Any]) -> Page:
    return await children_of(
        ctx,
        patient_id,
        children("Patient", "appointments"),
        args,
        ctx.loaders.appointments_by_patient,
        ctx.loaders.appointment_count_by_patient,
    )


async def encounters_of(ctx: Context, patient_id: uuid.UUID, args: Mapping[str, Any]) -> Page:
    return await children_of(
        ctx,
        patient_id,
        children("Patient", "encounters"),
        args,
        ctx.loaders.encounters_by_patient,
        ctx.loaders.encounter_count_by_patient,
    )


async def visit_summary_of(ctx: Context, patient_id: uuid.UUID) -> Any:
    """The patient's visit summary row, None until the clinical job has processed a finished
    encounter of theirs (batched with every other patient's of the request)."""
    return await ctx.loaders.visit_summary_by_patient.load(patient_id)
