"""One connection per request, used by one statement at a time — proven from a cold pool.

A shared connection passes on a warm pool and fails on a cold one (the first statements race the
connect and BEGIN), so every test here starts from a brand-new engine.
"""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import func, select

from hms.app import create_app
from hms.models.tables import appointment, encounter, patient
from hms.persistence.database import Database
from hms.settings import Settings
from tests import fixtures
from tests.api.test_batching import NESTED
from tests.conftest import token


async def test_concurrent_statements_in_one_request_share_the_connection_safely(
    settings: Settings, dataset: fixtures.Dataset
) -> None:
    database = Database.from_settings(settings.with_(db_pool_size=1, db_max_overflow=0))
    db = database.request(dataset.alpha.id, readonly=True)
    try:
        counts = await asyncio.gather(
            *(
                db.scalar(select(func.count()).select_from(table))
                for table in (patient, appointment, encounter) * 10
            )
        )
    finally:
        await db.close()
        await database.dispose()
    expected = [
        120,
        sum(len(a) for a in dataset.alpha.appointments.values()),
        sum(len(e) for e in dataset.alpha.encounters.values()),
    ]
    assert counts == expected * 10


async def test_concurrent_nested_requests_from_a_cold_pool(
    settings: Settings, dataset: fixtures.Dataset
) -> None:
    """32 clients at once through a 4-connection pool: every answer complete and correct."""
    app = create_app(settings.with_(db_pool_size=2, db_max_overflow=2))
    headers = {"Authorization": f"Bearer {token(dataset.alpha)}"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hms.test") as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        "/graphql", json={"query": NESTED, "variables": {"n": 50}}, headers=headers
                    )
                    for _ in range(32)
                )
            )
        pool = app.state.database.primary.pool
        assert pool.checkedout() == 0  # every request returned its connection
    bodies = [r.json() for r in responses]
    assert all(r.status_code == 200 for r in responses)
    assert all("errors" not in b for b in bodies), [b.get("errors") for b in bodies][:3]
    assert all(b == bodies[0] for b in bodies)  # one snapshot, same answer for everyone
    assert len(bodies[0]["data"]["patients"]["edges"]) == 50
