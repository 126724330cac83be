"""On the interpreted path, nested lists cost one statement per level, whatever the page size
(DESIGN §8). The compiled path's one statement is pinned in tests/api/test_compiled.py."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette

from tests import fixtures
from tests.conftest import GraphQL
from tests.statements import recorded

NESTED = """
query Nested($n: Int!) {
  patients(first: $n) { edges { node {
    mrn
    appointments(first: 5) { edges { node { startAt practitioner { familyName } } } }
    encounters(first: 3) { edges { node { class } } }
  } } }
}
"""


@pytest.mark.parametrize("n", [1, 50, 100])
async def test_nested_query_is_four_statements_for_any_page_size(
    igql: GraphQL, interpreted_app: Starlette, dataset: fixtures.Dataset, n: int
) -> None:
    with recorded(interpreted_app.state.database.primary) as statements:
        body = await igql(NESTED, {"n": n})
    assert "errors" not in body
    edges = body["data"]["patients"]["edges"]
    assert len(edges) == n
    # patients, appointments by patient (LATERAL), practitioners by id, encounters by patient
    assert len(statements) == 4, statements
    assert sum("LATERAL" in s for s in statements) == 2


async def test_per_parent_limits_are_applied_in_sql(
    gql: GraphQL, igql: GraphQL, dataset: fixtures.Dataset
) -> None:
    body = await gql(NESTED, {"n": 100})
    assert body == await igql(NESTED, {"n": 100})
    by_mrn = {e["node"]["mrn"]: e["node"] for e in body["data"]["patients"]["edges"]}
    for index in range(100):
        node = by_mrn.get(f"A{index:05d}")
        if node is None:
            continue
        assert len(node["appointments"]["edges"]) == min(5, fixtures.appointments_for(index))
        assert len(node["encounters"]["edges"]) == min(3, fixtures.encounters_for(index))


async def test_total_count_costs_a_statement_only_when_selected(
    igql: GraphQL, interpreted_app: Starlette
) -> None:
    with recorded(interpreted_app.state.database.primary) as without:
        await igql("{ patients(first: 5) { edges { node { id } } } }")
    with recorded(interpreted_app.state.database.primary) as with_count:
        body = await igql("{ patients(first: 5) { totalCount edges { node { id } } } }")
    assert body["data"]["patients"]["totalCount"] == 120
    assert len(without) == 1
    assert len(with_count) == 2
    assert any("count(" in s.lower() for s in with_count)


async def test_nested_total_count_is_one_grouped_statement(
    igql: GraphQL, interpreted_app: Starlette, dataset: fixtures.Dataset
) -> None:
    query = (
        "{ patients(first: 40) { edges { node { mrn appointments(first: 1) { totalCount } } } } }"
    )
    with recorded(interpreted_app.state.database.primary) as statements:
        body = await igql(query)
    assert len(statements) == 3  # patients, the LATERAL page, one GROUP BY count
    for edge in body["data"]["patients"]["edges"]:
        index = int(edge["node"]["mrn"][1:])
        assert edge["node"]["appointments"]["totalCount"] == fixtures.appointments_for(index)


async def test_patient_stats_is_one_aggregate_statement(
    igql: GraphQL, interpreted_app: Starlette, dataset: fixtures.Dataset
) -> None:
    with recorded(interpreted_app.state.database.primary) as statements:
        body = await igql("{ patientStats { total active newLast30Days } }")
    assert len(statements) == 1
    assert body["data"]["patientStats"] == {
        "total": 120,
        "active": dataset.alpha.active,
        "newLast30Days": dataset.alpha.new_last_30_days,
    }
