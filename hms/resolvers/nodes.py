"""``node``/``nodes``: any object by its global id; missing and foreign ids are null."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from hms.context import Context
from hms.loaders.base import RowByKeyLoader
from hms.resolvers.relay import from_global_id


def _loader(ctx: Context, type_name: str) -> RowByKeyLoader[Any]:
    return {
        "Patient": ctx.loaders.patient_by_id,
        "Practitioner": ctx.loaders.practitioner_by_id,
        "Appointment": ctx.loaders.appointment_by_id,
        "Encounter": ctx.loaders.encounter_by_id,
        "Hospital": ctx.loaders.hospital_by_id,
        "Report": ctx.loaders.report_by_id,
    }[type_name]


async def node(ctx: Context, global_id: str) -> tuple[str, Any] | None:
    type_name, pk = from_global_id(global_id)
    row = await _loader(ctx, type_name).load(pk)
    return None if row is None else (type_name, row)


async def nodes(ctx: Context, global_ids: Sequence[str]) -> list[tuple[str, Any] | None]:
    """All ids load together (one statement per type). Every id is decoded first, so a bad id
    fails the field before any load starts and leaves no batch behind."""
    decoded = [from_global_id(global_id) for global_id in global_ids]
    rows = await asyncio.gather(*(_loader(ctx, kind).load(pk) for kind, pk in decoded))
    return [
        None if row is None else (kind, row) for (kind, _pk), row in zip(decoded, rows, strict=True)
    ]
