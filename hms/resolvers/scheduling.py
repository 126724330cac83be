"""Appointment, encounter and practitioner reads, root lists and nested ones."""

from __future__ import annotations

import uuid

from hms.context import Context
from hms.persistence import appointments, encounters, practitioners
from hms.persistence.filters import AppointmentFilter, EncounterFilter, PractitionerFilter
from hms.resolvers.pagination import Page, PageArgs, anchored, direction, page_spec
from hms.resolvers.relay import CursorCodec


async def appointment_list(
    ctx: Context, args: PageArgs, f: AppointmentFilter | None, descending: bool
) -> Page:
    key = appointments.sort_key(descending=descending)
    codec = CursorCodec(f"appointments:start:{direction(descending)}")
    rows = await anchored(appointments.page(ctx.db, f, key, page_spec(ctx.settings, args, codec)))
    return Page.of(rows, codec, lambda: appointments.total(ctx.db, f))


async def encounter_list(ctx: Context, args: PageArgs, f: EncounterFilter | None) -> Page:
    codec = CursorCodec("encounters")
    rows = await anchored(encounters.page(ctx.db, f, page_spec(ctx.settings, args, codec)))
    return Page.of(rows, codec, lambda: encounters.total(ctx.db, f))


async def practitioner_list(ctx: Context, args: PageArgs, f: PractitionerFilter | None) -> Page:
    codec = CursorCodec("practitioners")
    rows = await anchored(practitioners.page(ctx.db, f, page_spec(ctx.settings, args, codec)))
    return Page.of(rows, codec, lambda: practitioners.total(ctx.db, f))


async def appointments_of_practitioner(
    ctx: Context, practitioner_id: uuid.UUID, args: PageArgs, f: AppointmentFilter | None
) -> Page:
    codec = CursorCodec("practitioner.appointments")
    rows = await anchored(
        ctx.loaders.appointments_by_practitioner.load(
            (practitioner_id, f, page_spec(ctx.settings, args, codec))
        )
    )
    return Page.of(
        rows,
        codec,
        lambda: ctx.loaders.appointment_count_by_practitioner.load((practitioner_id, f)),
    )
