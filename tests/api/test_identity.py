"""Identity edges at the door (issue 6, defect 7)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette

from hms.app import create_app
from hms.models.ids import uuid7
from hms.security.identity import Tenants
from hms.security.tokens import issue
from hms.settings import Settings
from tests import fixtures
from tests.conftest import SECRET, token, without_cost
from tests.statements import recorded


async def test_a_token_for_a_hospital_that_does_not_exist_is_401(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    nowhere = issue(SECRET, subject="ghost", hospital_id=uuid7(), roles=["admin"])
    for _ in range(2):
        with recorded(app.state.database.primary) as statements:
            response = await client.post(
                "/graphql",
                json={"query": "{ viewer { userId hospital { name } } }"},
                headers={"Authorization": f"Bearer {nowhere}"},
            )
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        assert without_cost(response.json()) == {
            "errors": [
                {
                    "message": "token names a hospital that does not exist",
                    "extensions": {"code": "UNAUTHENTICATED"},
                }
            ]
        }
    # The answer is remembered: the second attempt cost no lookup.
    assert statements == []


async def test_known_hospitals_cost_no_lookup_per_request(
    client: httpx.AsyncClient, app: Starlette, dataset: fixtures.Dataset
) -> None:
    with recorded(app.state.database.primary) as statements:
        response = await client.post(
            "/graphql",
            json={"query": "{ viewer { userId } }"},
            headers={"Authorization": f"Bearer {token(dataset.alpha)}"},
        )
    assert without_cost(response.json()) == {"data": {"viewer": {"userId": "tester"}}}
    assert not any("hospital" in statement for statement in statements)


async def test_a_token_living_past_the_maximum_is_401(client: httpx.AsyncClient) -> None:
    forever = issue(
        SECRET,
        subject="u",
        hospital_id=uuid.uuid4(),
        roles=["admin"],
        ttl=dt.timedelta(days=3650),
    )
    response = await client.post(
        "/graphql",
        json={"query": "{ viewer { userId } }"},
        headers={"Authorization": f"Bearer {forever}"},
    )
    assert response.status_code == 401
    assert "lifetime" in response.json()["errors"][0]["message"]


@pytest.fixture
async def prod_app(settings: Settings) -> AsyncIterator[Starlette]:
    app = create_app(settings.with_(env="prod", introspection=False, graphiql=False))
    async with app.router.lifespan_context(app):
        yield app


@pytest.mark.parametrize(
    "query",
    [
        "{ patients { edges { node { familyNam } } } }",
        '{ patient(idd: "x") { id } }',
        "query($f: PatientFilter) { patients(filter: $f) { totalCount } }",
    ],
)
async def test_production_gives_no_field_suggestions(
    prod_app: Starlette, client: httpx.AsyncClient, dataset: fixtures.Dataset, query: str
) -> None:
    variables = {"f": {"namePrefx": "A"}}
    headers = {"Authorization": f"Bearer {token(dataset.alpha)}"}
    transport = httpx.ASGITransport(app=prod_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hms.test") as prod:
        answer = await prod.post(
            "/graphql", json={"query": query, "variables": variables}, headers=headers
        )
    assert answer.json()["errors"]
    assert "Did you mean" not in answer.text
    # Development keeps them: they help the people writing queries.
    dev = await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    )
    assert "Did you mean" in dev.text


async def test_the_hospital_directory_is_bounded(app: Starlette, dataset: fixtures.Dataset) -> None:
    tenants = Tenants(app.state.database, size=2)
    for hospital_id in (dataset.alpha.id, dataset.beta.id, uuid7()):
        await tenants.exists(hospital_id)
    assert list(tenants._known) == [dataset.beta.id, next(reversed(tenants._known))]
    assert len(tenants._known) == 2


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_answers_are_remembered_found_for_minutes_missing_for_seconds(
    app: Starlette, database_url: str
) -> None:
    clock = Clock()
    tenants = Tenants(app.state.database, found_ttl=300, missing_ttl=30, clock=clock)
    ward = fixtures.HospitalData(id=uuid7(), slug=f"late-{uuid7().hex[-8:]}")
    primary = app.state.database.primary
    assert not await tenants.exists(ward.id)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO hospital (id, slug, name) VALUES ($1, $2, 'Late')", ward.id, ward.slug
        )
    finally:
        await conn.close()
    clock.now += 29.9
    with recorded(primary) as statements:
        assert not await tenants.exists(ward.id)  # still the remembered answer
    assert statements == []
    clock.now += 0.2
    with recorded(primary) as statements:
        assert await tenants.exists(ward.id)  # asked again after 30 s
    assert len(statements) == 1
    clock.now += 299.9
    with recorded(primary) as statements:
        assert await tenants.exists(ward.id)
    assert statements == []
    clock.now += 0.2
    with recorded(primary) as statements:
        assert await tenants.exists(ward.id)
    assert len(statements) == 1


async def test_the_lookup_reads_the_primary_even_with_replicas(
    settings: Settings, database_url: str, dataset: fixtures.Dataset
) -> None:
    """A hospital created a moment ago may not be on a replica yet."""
    app = create_app(settings.with_(database_replica_urls=(database_url,)))
    async with app.router.lifespan_context(app):
        database = app.state.database
        with recorded(database.primary) as on_primary, recorded(database.replicas[0]) as on_replica:
            assert await Tenants(database).exists(dataset.alpha.id)
    assert len(on_primary) == 1
    assert on_replica == []
