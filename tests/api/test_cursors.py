"""Cursors carry no PHI and only work in their own hospital (issue 6, defect 8), and the page
edges that issue 15 found unpinned: ``hasNextPage`` when the rest exactly fills a page, on
``first: 0``, and on backward pages.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest

from hms.resolvers.relay import CursorCodec, to_global_id
from tests import fixtures
from tests.conftest import GraphQL

PAGE = """query($first: Int, $after: String, $last: Int, $before: String) {
  practitioners(first: $first, after: $after, last: $last, before: $before) {
    edges { cursor node { id familyName } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}"""


def decoded(cursor: str) -> str:
    return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()


async def page(gql: GraphQL, hospital: fixtures.HospitalData | None = None, **args: Any) -> Any:
    return await gql(PAGE, args, hospital=hospital)


async def test_a_cursor_is_the_order_and_a_row_id_nothing_else(
    gql: GraphQL, dataset: fixtures.Dataset
) -> None:
    body = await gql("{ patients(first: 3) { edges { cursor node { id familyName givenName } } } }")
    for edge in body["data"]["patients"]["edges"]:
        text = decoded(edge["cursor"])
        scope, _, raw = text.rpartition(":")
        assert scope == "patients:name:asc"
        assert to_global_id("Patient", uuid.UUID(raw)) == edge["node"]["id"]
        assert edge["node"]["familyName"] not in text
        assert edge["node"]["givenName"] not in text


async def test_a_cursor_replayed_in_another_hospital_is_refused(
    gql: GraphQL, dataset: fixtures.Dataset
) -> None:
    alpha = (await page(gql, first=2))["data"]["practitioners"]["pageInfo"]["endCursor"]
    for args in ({"first": 2, "after": alpha}, {"last": 2, "before": alpha}):
        body = await page(gql, dataset.beta, **args)
        assert body["data"] is None
        error = body["errors"][0]
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        argument = "after" if "after" in args else "before"
        assert error["message"].startswith(f"Invalid cursor in '{argument}'")


@pytest.mark.parametrize(
    "pk",
    [
        uuid.uuid4(),  # no such row
        uuid.UUID(int=0),
    ],
)
async def test_a_well_formed_cursor_to_no_visible_row_is_refused(
    gql: GraphQL, pk: uuid.UUID
) -> None:
    made_up = CursorCodec("practitioners").encode(type("Row", (), {"id": pk}))
    body = await page(gql, first=2, after=made_up)
    assert body["errors"][0]["message"].startswith("Invalid cursor in 'after'")


async def test_a_cursor_to_a_row_of_another_table_is_refused(
    gql: GraphQL, dataset: fixtures.Dataset
) -> None:
    patient_id = dataset.alpha.patients[0]
    aimed = CursorCodec("practitioners").encode(type("Row", (), {"id": patient_id}))
    body = await page(gql, first=2, after=aimed)
    assert body["errors"][0]["message"].startswith("Invalid cursor in 'after'")


async def test_nested_cursors_are_bound_to_the_hospital_too(
    gql: GraphQL, dataset: fixtures.Dataset
) -> None:
    nested = """query($id: ID!, $after: String) { patient(id: $id) {
      appointments(first: 1, after: $after) { edges { node { id } } pageInfo { endCursor } }
    } }"""
    beta_patient = to_global_id("Patient", dataset.beta.patients[1])
    beta = await gql(nested, {"id": beta_patient}, hospital=dataset.beta)
    foreign = beta["data"]["patient"]["appointments"]["pageInfo"]["endCursor"]
    assert foreign is not None
    alpha_patient = to_global_id("Patient", dataset.alpha.patients[6])
    body = await gql(nested, {"id": alpha_patient, "after": foreign})
    assert body["errors"][0]["message"].startswith("Invalid cursor in 'after'")
    # The same cursor keeps working where it belongs.
    again = await gql(nested, {"id": beta_patient, "after": foreign}, hospital=dataset.beta)
    assert "errors" not in again


async def test_the_end_of_a_list_is_an_empty_page_not_an_error(gql: GraphQL) -> None:
    everything = (await page(gql, first=3))["data"]["practitioners"]
    last_cursor = everything["pageInfo"]["endCursor"]
    body = await page(gql, first=3, after=last_cursor)
    assert body == {
        "data": {
            "practitioners": {
                "edges": [],
                "pageInfo": {
                    "hasNextPage": False,
                    "hasPreviousPage": True,
                    "startCursor": None,
                    "endCursor": None,
                },
            }
        }
    }


async def test_has_next_page_when_the_rest_exactly_fills_the_page(gql: GraphQL) -> None:
    """Alpha has 3 practitioners: 3 fill a page exactly, 2 leave one over."""
    exact = (await page(gql, first=3))["data"]["practitioners"]
    assert len(exact["edges"]) == 3
    assert exact["pageInfo"]["hasNextPage"] is False
    short = (await page(gql, first=2))["data"]["practitioners"]
    assert short["pageInfo"]["hasNextPage"] is True
    rest = (await page(gql, first=1, after=short["pageInfo"]["endCursor"]))["data"]
    assert rest["practitioners"]["pageInfo"]["hasNextPage"] is False


async def test_first_zero(gql: GraphQL) -> None:
    some = (await page(gql, first=0))["data"]["practitioners"]
    assert some["edges"] == []
    assert some["pageInfo"]["hasNextPage"] is True  # there are rows after the empty page
    last = (await page(gql, first=3))["data"]["practitioners"]["pageInfo"]["endCursor"]
    none = (await page(gql, first=0, after=last))["data"]["practitioners"]
    assert none["pageInfo"]["hasNextPage"] is False


async def test_backward_pages(gql: GraphQL) -> None:
    everything = [
        e["node"]["id"] for e in (await page(gql, first=3))["data"]["practitioners"]["edges"]
    ]
    tail = (await page(gql, last=2))["data"]["practitioners"]
    assert [e["node"]["id"] for e in tail["edges"]] == everything[1:]
    assert tail["pageInfo"]["hasNextPage"] is False  # nothing after the end
    assert tail["pageInfo"]["hasPreviousPage"] is True
    before = (await page(gql, last=1, before=tail["pageInfo"]["startCursor"]))["data"]
    info = before["practitioners"]["pageInfo"]
    assert [e["node"]["id"] for e in before["practitioners"]["edges"]] == everything[:1]
    assert info["hasNextPage"] is True  # the rows we came from
    assert info["hasPreviousPage"] is False
    exact = (await page(gql, last=3))["data"]["practitioners"]["pageInfo"]
    assert exact["hasPreviousPage"] is False
