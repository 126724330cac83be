"""RequestDb.savepoint: a failed block leaves nothing, and the transaction stays usable."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from hms.models.tables import patient
from hms.persistence import patient_writes
from hms.persistence.database import Database, RequestDb
from hms.persistence.errors import MrnTaken
from hms.settings import Settings
from tests import fixtures
from tests.api.writes import make_hospital


async def two_inserts(db: RequestDb, *rows: dict[str, Any]) -> None:
    async with db.savepoint():
        for values in rows:
            await patient_writes.create(db, values)


async def insert_then_fail(db: RequestDb, values: dict[str, Any]) -> None:
    async with db.savepoint():
        await patient_writes.create(db, values)
        raise RuntimeError("injected")


async def test_savepoint_undoes_only_its_block(
    settings: Settings, dataset: fixtures.Dataset
) -> None:
    assert settings.database_url is not None
    ward = await make_hospital(settings.database_url, practitioners=0)
    database = Database.from_settings(settings)
    db = database.request(ward.id, readonly=False)
    values = {"mrn": "S-1", "given_name": "A", "family_name": "B"}
    try:
        async with db.savepoint():
            await patient_writes.create(db, values)
        with pytest.raises(MrnTaken):
            await two_inserts(db, {**values, "mrn": "S-2"}, values)  # the second fails
        with pytest.raises(RuntimeError):
            await insert_then_fail(db, {**values, "mrn": "S-3"})
        async with db.savepoint():  # the transaction is not aborted
            await patient_writes.create(db, {**values, "mrn": "S-4"})
        await db.close(commit=True)
        check = database.request(ward.id, readonly=True)
        mrns = await check.all(select(patient.c.mrn).order_by(patient.c.mrn))
        await check.close()
    finally:
        await database.dispose()
    assert [r.mrn for r in mrns] == ["S-1", "S-4", "W0", "W1"]
