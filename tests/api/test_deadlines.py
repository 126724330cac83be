"""Every request ends by its deadline and frees its connection (issue 6, defect 3).

Work is made slow for real: another session holds an ACCESS EXCLUSIVE lock on ``patient``, so
every read of it waits in PostgreSQL. Before, such a request waited as long as the lock was
held (and a 100 KB name prefix ran 38 s of PostgreSQL CPU, on after the client had gone).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette

from hms.app import create_app
from hms.persistence.urls import asyncpg_dsn
from hms.resolvers.relay import to_global_id
from hms.settings import Settings
from tests import fixtures
from tests.conftest import token, without_cost

GRAPHQL_RESPONSE = "application/graphql-response+json"

WAITING = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND application_name = 'hms' AND wait_event_type = 'Lock'
"""


@pytest.fixture
async def locked(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A session holding every reader of ``patient`` back until the test ends."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    tx = conn.transaction()
    await tx.start()
    await conn.execute("LOCK TABLE patient IN ACCESS EXCLUSIVE MODE")
    try:
        yield conn
    finally:
        await tx.rollback()
        await conn.close()


@pytest.fixture
async def one_second_app(settings: Settings) -> AsyncIterator[Starlette]:
    app = create_app(
        settings.with_(read_timeout=1.0, write_timeout=1.0, db_pool_size=1, db_max_overflow=0)
    )
    async with app.router.lifespan_context(app):
        yield app


async def ask(app: Starlette, hospital: fixtures.HospitalData, query: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hms.test") as client:
        return await client.post(
            "/graphql",
            json={"query": query},
            headers={"Authorization": f"Bearer {token(hospital)}", "Accept": GRAPHQL_RESPONSE},
        )


def assert_timeout(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 504
    body: dict[str, Any] = response.json()
    assert "data" not in body
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "TIMEOUT"
    assert "1 s deadline" in error["message"]
    return body


async def test_a_read_stuck_in_postgresql_times_out_and_frees_everything(
    one_second_app: Starlette,
    dataset: fixtures.Dataset,
    locked: asyncpg.Connection,
) -> None:
    started = time.monotonic()
    response = await ask(one_second_app, dataset.alpha, "{ patientStats { total } }")
    elapsed = time.monotonic() - started
    assert_timeout(response)
    assert 0.9 < elapsed < 3
    assert one_second_app.state.database.primary.pool.checkedout() == 0
    assert await locked.fetchval(WAITING) == 0  # PostgreSQL stopped the statement too


async def test_requests_waiting_for_a_connection_time_out_too(
    one_second_app: Starlette,
    dataset: fixtures.Dataset,
    locked: asyncpg.Connection,
) -> None:
    """With a one-connection pool, the second request never gets a connection: the app's own
    deadline ends it (through a DataLoader batch, which is a task of its own)."""
    patient = to_global_id("Patient", dataset.alpha.patients[0])
    started = time.monotonic()
    first, second = await asyncio.gather(
        ask(one_second_app, dataset.alpha, "{ patientStats { total } }"),
        ask(one_second_app, dataset.alpha, f'{{ node(id: "{patient}") {{ id }} }}'),
    )
    assert time.monotonic() - started < 3
    assert_timeout(first)
    assert_timeout(second)
    assert one_second_app.state.database.primary.pool.checkedout() == 0
    assert await locked.fetchval(WAITING) == 0


async def test_after_the_lock_is_gone_the_same_app_answers(
    one_second_app: Starlette, dataset: fixtures.Dataset
) -> None:
    response = await ask(one_second_app, dataset.alpha, "{ patientStats { total } }")
    assert without_cost(response.json()) == {"data": {"patientStats": {"total": 120}}}


async def test_a_timed_out_write_commits_nothing(
    one_second_app: Starlette, ward: fixtures.HospitalData, locked: asyncpg.Connection
) -> None:
    response = await ask(
        one_second_app,
        ward,
        'mutation { createPatient(input: {mrn: "DL-1", givenName: "Dee", familyName: "Line"})'
        " { patient { id } } }",
    )
    assert_timeout(response)
    await locked.execute("ROLLBACK")  # release the lock to look
    assert await locked.fetchval("SELECT count(*) FROM patient WHERE mrn = 'DL-1'") == 0
    await locked.execute("BEGIN")  # the fixture rolls back a transaction


async def test_legacy_json_clients_get_the_same_denial(
    one_second_app: Starlette, dataset: fixtures.Dataset, locked: asyncpg.Connection
) -> None:
    transport = httpx.ASGITransport(app=one_second_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hms.test") as client:
        response = await client.post(
            "/graphql",
            json={"query": "{ patientStats { total } }"},
            headers={"Authorization": f"Bearer {token(dataset.alpha)}"},
        )
    assert response.headers["content-type"].startswith("application/json")
    assert_timeout(response)
