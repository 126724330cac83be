"""After any request, including every error path, the request's connection is back in the pool
and PostgreSQL holds no transaction open for it (issue 6, defect 1).

The defect: a gathered resolver raised while sibling loads were pending; their batch ran after
the request's transaction had closed and silently opened a new connection and transaction that
nothing closed. Thirty such requests took every pooled connection, for every hospital.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette

from hms.persistence.urls import asyncpg_dsn
from hms.resolvers.relay import to_global_id
from tests import fixtures
from tests.api.writes import CREATE_PATIENT
from tests.conftest import token, without_cost

IDLE_IN_TRANSACTION = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND application_name = 'hms'
  AND state LIKE 'idle in transaction%'
"""


async def assert_nothing_left(app: Starlette, database_url: str) -> None:
    # Late work (a batch scheduled after the response) would run within a few loop turns.
    await asyncio.sleep(0.05)
    assert app.state.database.primary.pool.checkedout() == 0
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        assert await conn.fetchval(IDLE_IN_TRANSACTION) == 0
    finally:
        await conn.close()


def error_requests(dataset: fixtures.Dataset) -> list[tuple[str, dict[str, Any]]]:
    patient = to_global_id("Patient", dataset.alpha.patients[0])
    other = to_global_id("Patient", dataset.alpha.patients[1])
    practitioner = to_global_id("Practitioner", dataset.alpha.practitioners[0])
    return [
        (f'{{ nodes(ids: ["{patient}", "x"]) {{ id }} }}', {}),
        (f'{{ nodes(ids: ["x", "{patient}", "{practitioner}"]) {{ id }} }}', {}),
        (f'{{ a: node(id: "{patient}") {{ id }} b: node(id: "Zm9vOmJhcg") {{ id }} }}', {}),
        (
            '{ patients(first: 5) { edges { node { id appointments(after: "bad") '
            "{ totalCount } } } } }",
            {},
        ),
        (
            "{ patients(first: 5) { edges { node { id encounters(first: 101) "
            "{ totalCount } } } } }",
            {},
        ),
        (
            f'{{ a: patient(id: "{patient}") {{ appointments {{ edges {{ node {{ id }} }} }} }}'
            f' b: patient(id: "{other}") {{ encounters(first: -1) {{ totalCount }} }} }}',
            {},
        ),
        ('{ practitioners(first: 2, after: "nope") { totalCount } }', {}),
        ('{ patientByMrn(mrn: "A00001") { id } patients(last: 1, first: 1) { totalCount } }', {}),
        (
            CREATE_PATIENT.replace(
                "version }", "version appointments(first: 500) { totalCount } }"
            ),
            {"input": {"mrn": "LEAK-1", "givenName": "Lea", "familyName": "Kage"}},
        ),
    ]


async def test_no_connection_or_transaction_outlives_any_error_request(
    client: httpx.AsyncClient, app: Starlette, dataset: fixtures.Dataset, database_url: str
) -> None:
    headers = {"Authorization": f"Bearer {token(dataset.alpha)}"}
    for query, variables in error_requests(dataset):
        response = await client.post(
            "/graphql", json={"query": query, "variables": variables}, headers=headers
        )
        assert response.status_code == 200, response.text
        assert response.json()["errors"], query
        await assert_nothing_left(app, database_url)


async def test_thirty_failing_nodes_requests_leave_the_pool_whole(
    client: httpx.AsyncClient, app: Starlette, dataset: fixtures.Dataset, database_url: str
) -> None:
    """The reproduction from the issue, then a request from another hospital still answers."""
    patient = to_global_id("Patient", dataset.alpha.patients[0])
    query = f'{{ nodes(ids: ["{patient}", "x"]) {{ id }} }}'
    headers = {"Authorization": f"Bearer {token(dataset.alpha)}"}
    for _ in range(30):
        response = await client.post("/graphql", json={"query": query}, headers=headers)
        assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    await assert_nothing_left(app, database_url)
    other = {"Authorization": f"Bearer {token(dataset.beta)}"}
    answer = await asyncio.wait_for(
        client.post("/graphql", json={"query": "{ patientStats { total } }"}, headers=other), 5
    )
    assert without_cost(answer.json()) == {"data": {"patientStats": {"total": 12}}}


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({}, {"query": "{ viewer { userId } }"}),  # 401
        (None, {"query": "{ nope }"}),  # validation
        (None, {"query": "{"}),  # parse
        (
            None,
            {
                "query": "query($n: Int) { patients(first: $n) { totalCount } }",
                "variables": {"n": "x"},
            },
        ),  # variable coercion
    ],
)
async def test_requests_refused_before_execution_take_no_connection(
    client: httpx.AsyncClient,
    app: Starlette,
    dataset: fixtures.Dataset,
    database_url: str,
    headers: dict[str, str] | None,
    body: dict[str, Any],
) -> None:
    if headers is None:
        headers = {"Authorization": f"Bearer {token(dataset.alpha)}"}
    response = await client.post("/graphql", json=body, headers=headers)
    assert "data" not in response.json()
    await assert_nothing_left(app, database_url)
