"""Migrations: no drift between models and migrations; they go down and up cleanly."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import pytest
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import create_async_engine

from hms.persistence import audit, migrate, patients
from hms.persistence.pages import keyset
from hms.persistence.urls import async_url
from tests import fixtures
from tests.interop.servers import free_port


async def _tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'alembic_version'"
        )
    finally:
        await conn.close()
    return {r["tablename"] for r in rows}


async def test_alembic_check_finds_no_drift(database_url: str) -> None:
    await asyncio.to_thread(migrate.check, database_url)


async def test_upgrade_downgrade_upgrade_on_an_empty_database(
    empty_database: Callable[[], Awaitable[str]],
) -> None:
    url = await empty_database()
    await asyncio.to_thread(migrate.upgrade, url)
    assert await _tables(url) == {
        "hospital",
        "practitioner",
        "patient",
        "appointment",
        "encounter",
        "idempotency_key",
        "persisted_document",
        "hospital_membership",
        "audit_event",
        "audit_head",
        "audit_patient",
        "emergency_grant",
        "hospital_webhook",
        "report",
        "patient_visit_summary",
        "pgqueuer",
        "pgqueuer_log",
        "pgqueuer_statistics",
        "pgqueuer_schedules",
    }
    await asyncio.to_thread(migrate.downgrade, url)
    assert await _tables(url) == set()
    await asyncio.to_thread(migrate.upgrade, url)
    await asyncio.to_thread(migrate.check, url)
    conn = await asyncpg.connect(url)
    try:
        policies = await conn.fetchval("SELECT count(*) FROM pg_policies WHERE schemaname='public'")
        exclusion = await conn.fetchval(
            "SELECT count(*) FROM pg_constraint WHERE contype = 'x' "
            "AND conname = 'ex_appointment_no_double_booking'"
        )
    finally:
        await conn.close()
    assert policies == 12  # one per tenant table and the hospital table
    assert exclusion == 1


async def test_screen_indexes_serve_their_queries(
    database_url: str, dataset: fixtures.Dataset
) -> None:
    """Each index of DESIGN §4 is chosen by the planner for the screen it exists for."""
    conn = await asyncpg.connect(database_url)
    await conn.execute("ANALYZE")
    h = f"'{dataset.alpha.id}'::uuid"
    screens = {
        "ix_patient_name": f"SELECT id FROM patient WHERE hospital_id = {h} "
        "ORDER BY family_name, given_name, id LIMIT 21",
        "ix_patient_created": f"SELECT id FROM patient WHERE hospital_id = {h} "
        "AND created_at >= now() - interval '30 days'",
        "ix_appointment_start": f"SELECT id FROM appointment WHERE hospital_id = {h} "
        "ORDER BY start_at, id LIMIT 21",
        "ix_appointment_practitioner_start": f"SELECT id FROM appointment WHERE hospital_id = {h}"
        f" AND practitioner_id = {h} ORDER BY start_at LIMIT 21",
        "ix_appointment_patient_start": f"SELECT id FROM appointment WHERE hospital_id = {h} "
        f"AND patient_id = {h} ORDER BY start_at DESC LIMIT 6",
        "ix_encounter_patient_period": f"SELECT id FROM encounter WHERE hospital_id = {h} "
        f"AND patient_id = {h} ORDER BY period_start DESC, id DESC LIMIT 4",
    }
    try:
        await conn.execute("SET enable_seqscan = off")  # tiny tables: make the choice visible
        for index, sql in screens.items():
            plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {sql}"))
            assert index in plan, f"{index} not used:\n{plan}"
    finally:
        await conn.close()


async def test_anchored_pages_seek_in_the_index(
    database_url: str, dataset: fixtures.Dataset
) -> None:
    """A cursor names a row; its sort key is read by sub-select and the index seeks past it."""
    key = patients.sort_key("name", descending=False)
    query = patients.PATIENTS.query(dataset.alpha.id)
    stmt = keyset(query.stmt, key, after=True, before=False, backward=False).params(
        hospital_id=dataset.alpha.id, after_id=dataset.alpha.patients[3], limit=21
    )
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    sql = str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("ANALYZE")
        await conn.execute("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {sql}"))
    finally:
        await conn.close()
    assert "ix_patient_name" in plan, plan
    seek = next(line for line in plan.splitlines() if "ix_patient_name" in line)
    conditions = plan.split(seek, 1)[1]
    assert "Index Cond:" in conditions, plan
    assert "ROW(family_name, given_name, id) > ROW(" in conditions, plan


async def test_events_sealed_before_0007_still_verify_after_it(
    empty_database: Callable[[], Awaitable[str]],
) -> None:
    """0007 puts the reason into each event's hash; the chains sealed before it stay intact
    (``concat_ws`` skips the NULL reason), and the events after it chain on."""
    url = await empty_database()
    await asyncio.to_thread(migrate.upgrade, url, "0006")
    hospital = uuid.uuid4()
    conn = await asyncpg.connect(url)
    append = (
        "INSERT INTO audit_event (hospital_id, subject, roles, operation_type, patient_ids,"
        " field_classes, outcome) VALUES ($1, 'u', '{clinician}', 'query', $2, '{}', 'ok')"
    )
    try:
        await conn.execute(
            "INSERT INTO hospital (id, slug, name) VALUES ($1, 'h0007', 'H')", hospital
        )
        for _ in range(3):
            await conn.execute(append, hospital, [uuid.uuid4()])
        await conn.execute("SELECT audit_seal_all()")
        await asyncio.to_thread(migrate.upgrade, url)
        await conn.execute(append, hospital, [uuid.uuid4()])
        await conn.execute(
            append.replace("outcome)", "outcome, reason)").replace("'ok')", "'ok', 'why')"),
            hospital,
            [uuid.uuid4()],
        )
        await conn.execute("SELECT audit_seal_all()")
    finally:
        await conn.close()
    engine = create_async_engine(async_url(url))
    try:
        assert await audit.verify(engine, hospital) == (5, [])
    finally:
        await engine.dispose()


async def test_production_serves_only_a_migrated_database(
    empty_database: Callable[[], Awaitable[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``hms serve`` in prod never migrates (the deploy's Job does) and never serves an older
    schema: it says so and exits 1."""
    from hms import cli

    url = await empty_database()
    assert await asyncio.to_thread(migrate.pending, url)
    monkeypatch.setenv("HMS_ENV", "prod")
    monkeypatch.setenv("HMS_DATABASE_URL", url)
    monkeypatch.setenv("HMS_JWT_SECRET", "s" * 32)
    monkeypatch.setenv("HMS_LOG_FORMAT", "text")
    monkeypatch.setenv("HMS_PORT", str(free_port()))  # refused for the schema, not the port
    assert await asyncio.to_thread(cli.main, ["serve"]) == 1
    assert await _tables(url) == set()  # nothing migrated behind the operator's back
    await asyncio.to_thread(migrate.upgrade, url, "0006")
    assert await asyncio.to_thread(migrate.pending, url)
    await asyncio.to_thread(migrate.upgrade, url)
    assert not await asyncio.to_thread(migrate.pending, url)
