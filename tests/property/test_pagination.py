"""Walking a connection page by page visits every row exactly once, in order, both ways."""

from __future__ import annotations

from typing import Any

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import fixtures
from tests.conftest import GraphQL

# (GraphQL filter argument, the same condition in SQL) — the SQL side is the oracle.
FILTERS = [
    ("", "true"),
    ("filter: {active: true}", "active"),
    ('filter: {namePrefix: "d"}', "(family_name ILIKE 'd%' OR given_name ILIKE 'd%')"),
    ("filter: {gender: FEMALE}", "gender = 'female'"),
]
ORDERS = [
    ("orderBy: {field: NAME, direction: ASC}", "family_name, given_name, id"),
    ("orderBy: {field: NAME, direction: DESC}", "family_name DESC, given_name DESC, id DESC"),
    ("orderBy: {field: CREATED_AT, direction: ASC}", "created_at, id"),
    ("orderBy: {field: CREATED_AT, direction: DESC}", "created_at DESC, id DESC"),
]


async def _walk(
    gql: GraphQL, args: str, sizes: list[int], *, backward: bool
) -> tuple[list[str], int]:
    seen: list[str] = []
    cursor: str | None = None
    for pages, step in enumerate(range(400), start=1):
        size = sizes[step % len(sizes)]
        if backward:
            page_args = f"last: {size}" + (f', before: "{cursor}"' if cursor else "")
        else:
            page_args = f"first: {size}" + (f', after: "{cursor}"' if cursor else "")
        body = await gql(
            f"{{ patients({page_args}, {args}) {{ edges {{ node {{ mrn }} }}"
            " pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }"
        )
        assert "errors" not in body, body
        connection: dict[str, Any] = body["data"]["patients"]
        mrns = [e["node"]["mrn"] for e in connection["edges"]]
        info = connection["pageInfo"]
        if backward:
            seen = mrns + seen
            more, cursor = info["hasPreviousPage"], info["startCursor"]
        else:
            seen += mrns
            more, cursor = info["hasNextPage"], info["endCursor"]
        assert len(mrns) <= size
        if not more:
            return seen, pages
        assert len(mrns) == size  # a page that says "more" is full
    raise AssertionError("pagination did not terminate")  # pragma: no cover


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    filter_=st.sampled_from(FILTERS),
    order=st.sampled_from(ORDERS),
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=5),
    backward=st.booleans(),
)
async def test_walk_visits_every_row_once_in_order(
    gql: GraphQL,
    database_url: str,
    dataset: fixtures.Dataset,
    filter_: tuple[str, str],
    order: tuple[str, str],
    sizes: list[int],
    backward: bool,
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            f"SELECT mrn FROM patient WHERE hospital_id = $1 AND {filter_[1]} ORDER BY {order[1]}",
            dataset.alpha.id,
        )
    finally:
        await conn.close()
    expected = [r["mrn"] for r in rows]
    args = ", ".join(a for a in (filter_[0], order[0]) if a)
    seen, pages = await _walk(gql, args, sizes, backward=backward)
    assert seen == expected
    assert pages >= 1
