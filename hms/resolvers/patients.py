"""Patient reads: one patient, the keyset list, the stats card, and a patient's nested lists."""

from __future__ import annotations

import uuid
from typing import Any

from hms.context import Context
from hms.persistence import patients
from hms.persistence.filters import AppointmentFilter, EncounterFilter, PatientFilter
from hms.resolvers.pagination import Page, PageArgs, anchored, direction, page_spec
from hms.resolvers.relay import CursorCodec, expect_global_id
from hms.resolvers.validation import MAX_MRN, bounded


async def patient(ctx: Context, global_id: str) -> Any:
    return await ctx.loaders.patient_by_id.load(expect_global_id(global_id, "Patient"))


async def patient_by_mrn(ctx: Context, mrn: str) -> Any:
    return await ctx.loaders.patient_by_mrn.load(bounded("mrn", mrn, MAX_MRN))


async def patient_list(
    ctx: Context, args: PageArgs, f: PatientFilter | None, order: str, descending: bool
) -> Page:
    key = patients.sort_key(order, descending=descending)
    codec = CursorCodec(f"patients:{order}:{direction(descending)}")
    rows = await anchored(patients.page(ctx.db, f, key, page_spec(ctx.settings, args, codec)))
    return Page.of(rows, codec, lambda: patients.total(ctx.db, f))


async def patient_stats(ctx: Context) -> Any:
    return await patients.stats(ctx.db, ctx.now)


async def appointments_of(
    ctx: Context, patient_id: uuid.UUID, args: PageArgs, f: AppointmentFilter | None
) -> Page:
    codec = CursorCodec("patient.appointments")
    rows = await anchored(
        ctx.loaders.appointments_by_patient.load(
            (patient_id, f, page_spec(ctx.settings, args, codec))
        )
    )
    return Page.of(
        rows, codec, lambda: ctx.loaders.appointment_count_by_patient.load((patient_id, f))
    )


async def encounters_of(
    ctx: Context, patient_id: uuid.UUID, args: PageArgs, f: EncounterFilter | None
) -> Page:
    codec = CursorCodec("patient.encounters")
    rows = await anchored(
        ctx.loaders.encounters_by_patient.load(
            (patient_id, f, page_spec(ctx.settings, args, codec))
        )
    )
    return Page.of(
        rows, codec, lambda: ctx.loaders.encounter_count_by_patient.load((patient_id, f))
    )
