"""Reports (CSV exports with names and MRNs) are deleted HMS_REPORT_RETENTION_DAYS after they
were asked for, in every hospital, by the worker's sweep under each hospital's own tenant."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from hms.jobs import retention
from hms.jobs.base import Services
from hms.persistence.database import Database
from hms.persistence.urls import async_url
from hms.settings import Settings
from tests import fixtures
from tests.api.writes import make_hospital, rows
from tests.conftest import SECRET


async def _report(database_url: str, hospital: fixtures.HospitalData, age_days: int) -> uuid.UUID:
    report_id = uuid.uuid4()
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO report (hospital_id, id, kind, range_start, range_end, status,"
            " requested_by, requested_at, content)"
            " VALUES ($1, $2, 'appointments', now() - interval '400 days', now(), 'ready',"
            " 'tester', now() - make_interval(days => $3), 'id\n'::bytea)",
            hospital.id,
            report_id,
            age_days,
        )
    finally:
        await conn.close()
    return report_id


@pytest.fixture
async def services(database_url: str) -> AsyncIterator[Services]:
    settings = Settings(database_url=database_url, jwt_secret=SECRET, db_pool_size=2)
    database = Database.from_settings(settings)
    owner = create_async_engine(async_url(database_url))
    async with httpx.AsyncClient() as http:
        yield Services(settings, database, owner, http)
    await database.dispose()
    await owner.dispose()


async def test_old_reports_of_every_hospital_go_and_recent_ones_stay(
    database_url: str, services: Services
) -> None:
    first, second = await make_hospital(database_url), await make_hospital(database_url)
    old = [await _report(database_url, h, 31) for h in (first, second)]
    recent = [await _report(database_url, h, 29) for h in (first, second)]

    keep_all = Services(
        services.settings.with_(report_retention_days=0),
        services.database,
        services.owner,
        services.http,
    )
    assert await retention.sweep(keep_all) == 0

    assert await retention.sweep(services) >= 2  # other tests' old reports may go too
    left = await rows(
        database_url,
        "SELECT id FROM report WHERE id = ANY($1::uuid[])",
        [*old, *recent],
    )
    assert {r["id"] for r in left} == set(recent)
    assert await retention.sweep(services) == 0  # nothing twice
