"""SQL for practitioners: by id and keyset lists by name."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row

from hms.models.tables import practitioner
from hms.persistence.database import RequestDb
from hms.persistence.filters import PractitionerFilter
from hms.persistence.pages import PageRows, PageSpec, SortKey, count, fetch_page
from hms.persistence.queries import HOSPITAL, Filtered, Query, eq, prefix

COLUMNS = (
    practitioner.c.id,
    practitioner.c.given_name,
    practitioner.c.family_name,
    practitioner.c.specialty,
    practitioner.c.active,
)

KEY = SortKey((practitioner.c.family_name, practitioner.c.given_name, practitioner.c.id))


PRACTITIONERS = Filtered(
    practitioner,
    COLUMNS,
    {
        "active": eq("active"),
        "specialty": eq("specialty"),
        "name_prefix": prefix("family_name", "given_name"),
    },
)


def _filtered(db: RequestDb, f: PractitionerFilter | None) -> Query:
    return PRACTITIONERS.query(db.hospital_id, f)


async def by_ids(db: RequestDb, ids: Sequence[uuid.UUID]) -> list[Row[Any]]:
    return await db.all(PRACTITIONERS.by("id"), {HOSPITAL: db.hospital_id, "keys": list(ids)})


async def page(db: RequestDb, f: PractitionerFilter | None, spec: PageSpec) -> PageRows:
    return await fetch_page(db, _filtered(db, f), KEY, spec)


async def total(db: RequestDb, f: PractitionerFilter | None) -> int:
    return await count(db, _filtered(db, f))
