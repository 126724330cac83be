from __future__ import annotations

from tests import fixtures
from tests.conftest import GraphQL


async def test_viewer_and_patients(gql: GraphQL, dataset: fixtures.Dataset) -> None:
    body = await gql(
        "{ viewer { userId roles hospital { slug } } patients(first: 3) { totalCount"
        " edges { cursor node { id mrn familyName appointments(first: 2) { edges { node {"
        " status practitioner { familyName } } } } } } pageInfo { hasNextPage endCursor } } }"
    )
    assert "errors" not in body, body
    assert body["data"]["viewer"]["hospital"]["slug"] == "alpha"
    assert body["data"]["patients"]["totalCount"] == 120
