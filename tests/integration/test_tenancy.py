"""Row-level security holds even when the app layer forgets to scope a query."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import func, select, text

from hms.models.tables import TENANT_TABLES, appointment, patient
from hms.persistence.database import APP_ROLE, Database
from hms.settings import Settings
from tests import fixtures


@pytest.fixture(scope="module")
async def database(settings: Settings) -> AsyncIterator[Database]:
    database = Database.from_settings(settings)
    yield database
    await database.dispose()


async def test_unscoped_query_sees_only_the_bound_tenant(
    database: Database, dataset: fixtures.Dataset
) -> None:
    db = database.request(dataset.beta.id, readonly=True)
    try:
        # No WHERE hospital_id here: RLS alone must keep alpha's rows out.
        total = await db.scalar(select(func.count()).select_from(patient))
        hospitals = await db.scalar(text("SELECT count(*) FROM hospital"))
    finally:
        await db.close()
    assert total == 12
    assert hospitals == 1


async def test_no_tenant_means_zero_rows(database: Database, dataset: fixtures.Dataset) -> None:
    db = database.request(None, readonly=True)
    try:
        for table in (*TENANT_TABLES, "hospital"):
            assert await db.scalar(text(f"SELECT count(*) FROM {table}")) == 0, table
    finally:
        await db.close()


async def test_requests_run_as_the_unprivileged_role(
    database: Database, dataset: fixtures.Dataset
) -> None:
    """The URL names a superuser, yet the request's statements run as the app role."""
    db = database.request(dataset.alpha.id, readonly=True)
    try:
        row = await db.one_or_none(
            text(
                "SELECT current_user, session_user, r.rolsuper, r.rolbypassrls, "
                "current_setting('transaction_read_only'), "
                "current_setting('transaction_isolation'), current_setting('jit') "
                "FROM pg_roles r WHERE r.rolname = current_user"
            )
        )
    finally:
        await db.close()
    assert row is not None
    assert tuple(row) == (APP_ROLE, "postgres", False, False, "on", "repeatable read", "off")


async def test_app_role_owns_nothing_and_rls_is_forced(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        owned = await conn.fetchval(
            "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
            "WHERE r.rolname = $1",
            APP_ROLE,
        )
        flags = await conn.fetch(
            "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
            "WHERE relname = ANY($1::text[])",
            [*TENANT_TABLES, "hospital"],
        )
    finally:
        await conn.close()
    assert owned == 0
    assert len(flags) == len(TENANT_TABLES) + 1
    assert all(f["relrowsecurity"] and f["relforcerowsecurity"] for f in flags)


async def test_tenant_cannot_write_into_another_hospital(
    database: Database, dataset: fixtures.Dataset
) -> None:
    """WITH CHECK refuses a row for another hospital even if the app layer were fooled."""
    db = database.request(dataset.alpha.id, readonly=False)
    try:
        with pytest.raises(Exception, match="row-level security"):
            await db.all(
                patient.insert().values(
                    hospital_id=dataset.beta.id,
                    id=uuid.uuid4(),
                    mrn="X-1",
                    given_name="Eve",
                    family_name="Mallory",
                )
            )
    finally:
        await db.close()


async def test_tenant_cannot_update_another_hospitals_rows(
    database: Database, dataset: fixtures.Dataset
) -> None:
    db = database.request(dataset.alpha.id, readonly=False)
    try:
        rows = await db.all(
            appointment.update()
            .where(appointment.c.hospital_id == dataset.beta.id)
            .values(reason="tampered")
            .returning(appointment.c.id)
        )
    finally:
        await db.close()
    assert rows == []
