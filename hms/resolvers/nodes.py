"""``node``/``nodes``: any object by its global id; missing and foreign ids are null."""

from __future__ import annotations

from typing import Any

from hms.context import Context
from hms.resolvers.relay import from_global_id


async def node(ctx: Context, global_id: str) -> tuple[str, Any] | None:
    type_name, pk = from_global_id(global_id)
    loader = {
        "Patient": ctx.loaders.patient_by_id,
        "Practitioner": ctx.loaders.practitioner_by_id,
        "Appointment": ctx.loaders.appointment_by_id,
        "Encounter": ctx.loaders.encounter_by_id,
        "Hospital": ctx.loaders.hospital_by_id,
    }[type_name]
    row = await loader.load(pk)
    return None if row is None else (type_name, row)
