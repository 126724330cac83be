"""A practitioner's schedule: the nested appointments connection."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from hms.context import Context
from hms.resolvers.fields import children
from hms.resolvers.lists import children_of
from hms.resolvers.pagination import Page


async def appointments_of_practitioner(
    ctx: Context, practitioner_id: uuid.UUID, args: Mapping[str, Any]
) -> Page:
    return await children_of(
        ctx,
        practitioner_id,
        children("Practitioner", "appointments"),
        args,
        ctx.loaders.appointments_by_practitioner,
        ctx.loaders.appointment_count_by_practitioner,
    )
