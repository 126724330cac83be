"""Answers of reference-only documents come from the two-level cache (issue 12): the second
asker runs no SQL, each hospital keeps its own, and patient data is never cached."""

from __future__ import annotations

from typing import Any

import httpx
from starlette.applications import Starlette

from tests import fixtures
from tests.conftest import token
from tests.statements import recorded

STAFF = "query Staff($n: Int!) { practitioners(first: $n) { edges { node { id familyName } } } }"
PATIENTS = "{ patients(first: 2) { edges { node { id } } } }"


async def ask(
    client: httpx.AsyncClient, hospital: fixtures.HospitalData, query: str, **variables: Any
) -> dict[str, Any]:
    response = await client.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token(hospital)}"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_the_second_asker_runs_no_sql(
    app: Starlette, client: httpx.AsyncClient, dataset: fixtures.Dataset
) -> None:
    engine = app.state.database.primary
    with recorded(engine) as first_run:
        first = await ask(client, dataset.alpha, STAFF, n=7)
    with recorded(engine) as second_run:
        second = await ask(client, dataset.alpha, STAFF, n=7)
    assert len(first_run) >= 1
    assert second_run == []
    assert second["data"] == first["data"]
    cost = second["extensions"]["cost"]
    assert cost["requestedQueryCost"] == first["extensions"]["cost"]["requestedQueryCost"]
    assert cost["actualQueryCost"] == first["extensions"]["cost"]["actualQueryCost"]


async def test_each_hospital_and_each_variable_has_its_own_answer(
    client: httpx.AsyncClient, dataset: fixtures.Dataset
) -> None:
    alpha = await ask(client, dataset.alpha, STAFF, n=5)
    beta = await ask(client, dataset.beta, STAFF, n=5)
    ids = {e["node"]["id"] for e in alpha["data"]["practitioners"]["edges"]}
    assert not ids & {e["node"]["id"] for e in beta["data"]["practitioners"]["edges"]}
    one = await ask(client, dataset.alpha, STAFF, n=1)
    assert len(one["data"]["practitioners"]["edges"]) == 1


async def test_patient_data_is_never_cached(
    app: Starlette, client: httpx.AsyncClient, dataset: fixtures.Dataset
) -> None:
    engine = app.state.database.primary
    await ask(client, dataset.alpha, PATIENTS)
    with recorded(engine) as again:
        await ask(client, dataset.alpha, PATIENTS)
    assert len(again) == 1  # the compiled statement, every time
