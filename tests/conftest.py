"""Shared fixtures: one throwaway database per test run on this machine's PostgreSQL.

The database is created, migrated and loaded once per session, and dropped at the end. API tests
drive the real ASGI app (lifespan included) through httpx; nothing stands in for PostgreSQL.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette

from hms.app import create_app
from hms.persistence import migrate
from hms.security.tokens import issue
from hms.settings import Settings
from tests import fixtures

SERVER = os.environ.get("HMS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
SECRET = "test-secret-not-for-production-0123456789"
NOW = dt.datetime.now(dt.UTC)


def dsn(database: str) -> str:
    return f"{SERVER}/{database}"


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(dsn("postgres"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def empty_database() -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """A factory of empty databases, all dropped at the end of the session."""
    created: list[str] = []

    async def make() -> str:
        name = f"hms_test_{uuid.uuid4().hex[:12]}"
        await _admin(f'CREATE DATABASE "{name}"')
        created.append(name)
        return dsn(name)

    yield make
    for name in created:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
async def database_url(empty_database: Callable[[], Awaitable[str]]) -> str:
    url = await empty_database()
    await asyncio.to_thread(migrate.upgrade, url)
    return url


@pytest.fixture(scope="session")
async def dataset(database_url: str) -> fixtures.Dataset:
    return await fixtures.load(database_url, NOW)


#: The key national ids are encrypted with in tests (HMS_PHI_KEY).
PHI_KEY = bytes(range(32))


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    # Budgets no test can run out of, and a cost cap above the 100-item nested pages other
    # tests read; tests/api/test_cost.py checks the shipped limits.
    unlimited = (1e12, 1e12)
    return Settings(
        database_url=database_url,
        jwt_secret=SECRET,
        phi_keys=(PHI_KEY,),
        graphiql=True,
        db_pool_size=5,
        max_cost=100_000,
        cost_budgets={"default": unlimited},
        hospital_cost_budget=unlimited,
    )


@pytest.fixture(scope="session")
async def app(settings: Settings, dataset: fixtures.Dataset) -> AsyncIterator[Starlette]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        # As on a running server, the hospitals are already known: statement counts in the
        # tests are those of the request itself, not of the first tenant lookup.
        tenants = application.state.pipeline.authenticator.tenants
        for hospital in (dataset.alpha, dataset.beta):
            assert await tenants.exists(hospital.id)
        yield application


@pytest.fixture(scope="session")
async def interpreted_app(
    settings: Settings, dataset: fixtures.Dataset
) -> AsyncIterator[Starlette]:
    """The same app with every operation on the interpreted path (HMS_EXECUTION=interpreted)."""
    application = create_app(settings.with_(execution="interpreted"))
    async with application.router.lifespan_context(application):
        tenants = application.state.pipeline.authenticator.tenants
        for hospital in (dataset.alpha, dataset.beta):
            assert await tenants.exists(hospital.id)
        yield application


@pytest.fixture(scope="session")
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hms.test") as http:
        yield http


def token(hospital: fixtures.HospitalData, *roles: str) -> str:
    return issue(SECRET, subject="tester", hospital_id=hospital.id, roles=roles or ["clinician"])


GraphQL = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture(scope="session")
async def interpreted_client(interpreted_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=interpreted_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hms.test") as http:
        yield http


@pytest.fixture(scope="session")
def gql(client: httpx.AsyncClient, dataset: fixtures.Dataset) -> GraphQL:
    """POST a query as an admin of ``hospital`` (alpha by default); return the JSON body."""
    return graphql_over(client, dataset)


@pytest.fixture(scope="session")
def igql(interpreted_client: httpx.AsyncClient, dataset: fixtures.Dataset) -> GraphQL:
    """Like ``gql``, on the interpreted path."""
    return graphql_over(interpreted_client, dataset)


def graphql_over(client: httpx.AsyncClient, dataset: fixtures.Dataset) -> GraphQL:
    async def run(
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        hospital: fixtures.HospitalData | None = None,
        status: int = 200,
    ) -> dict[str, Any]:
        response = await client.post(
            "/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"Authorization": f"Bearer {token(hospital or dataset.alpha)}"},
        )
        assert response.status_code == status, response.text
        body: dict[str, Any] = response.json()
        return without_cost(body)

    return run


COST_KEYS = {"requestedQueryCost", "actualQueryCost", "throttleStatus"}


def without_cost(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` without ``extensions.cost``, which every executed response must carry (the tests
    of everything else compare bodies; tests/api/test_cost.py checks the figures)."""
    if "data" in body:
        extensions = body.get("extensions", {})
        assert set(extensions.get("cost", {})) == COST_KEYS, body
        del extensions["cost"]
        if not extensions:
            del body["extensions"]
    return body
