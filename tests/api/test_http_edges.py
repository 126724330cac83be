"""HTTP edges issue 15 found unpinned: exact body limits, mixed-case media types, and the
``path`` of a masked error."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from hms.settings import Settings
from tests import fixtures
from tests.api.writes import CREATE_PATIENT
from tests.conftest import token, without_cost

QUERY = b'{"query": "{ viewer { userId } }'


def body_of(size: int) -> bytes:
    """A valid request body of exactly ``size`` bytes (padded with spaces in the query)."""
    tail = b'"}'
    padding = size - len(QUERY) - len(tail)
    assert padding >= 0
    return QUERY + b" " * padding + tail


@pytest.mark.parametrize("streamed", [False, True])
async def test_the_body_limit_is_exact(
    client: httpx.AsyncClient, dataset: fixtures.Dataset, settings: Settings, streamed: bool
) -> None:
    limit = settings.max_body_bytes
    headers = {
        "Authorization": f"Bearer {token(dataset.alpha)}",
        "Content-Type": "application/json",
    }
    for size, status in ((limit, 200), (limit + 1, 413)):
        content = body_of(size)

        async def chunks(data: bytes = content) -> AsyncIterator[bytes]:
            # Without Content-Length: the server must count what arrives.
            for start in range(0, len(data), 65_536):
                yield data[start : start + 65_536]

        response = await client.post(
            "/graphql", content=chunks() if streamed else content, headers=headers
        )
        assert response.status_code == status, (size, response.text[:200])


@pytest.mark.parametrize(
    ("accept", "media_type"),
    [
        ("Application/JSON", "application/json"),
        ("APPLICATION/GRAPHQL-RESPONSE+JSON", "application/graphql-response+json"),
        ("*/*", "application/json"),
        ("Application/*;q=0.5", "application/json"),
    ],
)
async def test_media_types_match_without_regard_to_case(
    client: httpx.AsyncClient, dataset: fixtures.Dataset, accept: str, media_type: str
) -> None:
    response = await client.post(
        "/graphql",
        json={"query": "{ viewer { userId } }"},
        headers={"Authorization": f"Bearer {token(dataset.alpha)}", "Accept": accept},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == f"{media_type}; charset=utf-8"


async def test_content_type_matches_without_regard_to_case(
    client: httpx.AsyncClient, dataset: fixtures.Dataset
) -> None:
    response = await client.post(
        "/graphql",
        content=b'{"query": "{ viewer { userId } }"}',
        headers={
            "Authorization": f"Bearer {token(dataset.alpha)}",
            "Content-Type": "Application/Json; Charset=UTF-8",
        },
    )
    assert without_cost(response.json()) == {"data": {"viewer": {"userId": "tester"}}}


BROKEN = """
CREATE FUNCTION test_broken_read() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.mrn = 'EDGE-BOOM' THEN RAISE EXCEPTION 'boom'; END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER test_broken_read BEFORE INSERT ON patient
  FOR EACH ROW EXECUTE FUNCTION test_broken_read();
"""


@pytest.fixture
async def broken(database_url: str) -> AsyncIterator[None]:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(BROKEN)
        yield
    finally:
        await conn.execute(
            "DROP TRIGGER test_broken_read ON patient; DROP FUNCTION test_broken_read();"
        )
        await conn.close()


async def test_a_masked_error_keeps_its_path_and_location(
    client: httpx.AsyncClient, ward: fixtures.HospitalData, broken: None
) -> None:
    response = await client.post(
        "/graphql",
        json={
            "query": CREATE_PATIENT,
            "variables": {"input": {"mrn": "EDGE-BOOM", "givenName": "E", "familyName": "Dge"}},
        },
        headers={"Authorization": f"Bearer {token(ward)}"},
    )
    body = response.json()
    assert body["data"] is None
    assert body["errors"] == [
        {
            "message": "Internal server error",
            "extensions": {"code": "INTERNAL_SERVER_ERROR"},
            "locations": [{"line": 1, "column": 41}],
            "path": ["createPatient"],
        }
    ]
