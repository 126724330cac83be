"""A mutation response never reports a write that was not committed, and never hides one that
was (issue 6, defect 2; the property test in tests/property/test_mutation_truth.py generalises).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from tests import fixtures
from tests.api.writes import CREATE_PATIENT, rows
from tests.conftest import token

Hospital = fixtures.HospitalData

WITH_BAD_NESTED_PAGE = CREATE_PATIENT.replace(
    "version }", "version appointments(first: 500) { totalCount } }"
)


async def committed(database_url: str, hospital: Hospital, mrn: str) -> int:
    found = await rows(
        database_url,
        "SELECT count(*) AS n FROM patient WHERE hospital_id = $1 AND mrn = $2",
        hospital.id,
        mrn,
    )
    return int(found[0]["n"])


async def test_an_error_in_the_payload_rolls_the_write_back_and_says_so(
    client: httpx.AsyncClient, ward: Hospital, database_url: str
) -> None:
    """The issue's case (b): the payload failed, yet the row used to be committed."""
    headers = {"Authorization": f"Bearer {token(ward)}", "Idempotency-Key": "rb-1"}
    variables = {"input": {"mrn": "RB-1", "givenName": "Rho", "familyName": "Back"}}
    response = await client.post(
        "/graphql",
        json={"query": WITH_BAD_NESTED_PAGE, "variables": variables},
        headers=headers,
    )
    body = response.json()
    assert body["data"] is None
    assert body["extensions"]["rolledBack"] is True
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert body["errors"][0]["path"] == ["createPatient", "patient", "appointments"]
    assert await committed(database_url, ward, "RB-1") == 0

    # Nothing was stored under the key either: the corrected retry runs (no 422, no replay).
    retry = await client.post(
        "/graphql", json={"query": CREATE_PATIENT, "variables": variables}, headers=headers
    )
    assert retry.status_code == 200
    assert "idempotent-replayed" not in retry.headers
    assert retry.json()["data"]["createPatient"]["patient"]["mrn"] == "RB-1"
    assert await committed(database_url, ward, "RB-1") == 1


async def test_an_error_in_a_later_field_rolls_back_the_earlier_ones(
    client: httpx.AsyncClient, ward: Hospital, database_url: str
) -> None:
    query = """mutation {
      a: createPatient(input: {mrn: "RB-A", givenName: "A", familyName: "One"}) { patient { id } }
      b: createPatient(input: {mrn: "RB-B", givenName: "B", familyName: "Two"}) {
        patient { encounters(first: -1) { totalCount } }
      }
    }"""
    response = await client.post(
        "/graphql", json={"query": query}, headers={"Authorization": f"Bearer {token(ward)}"}
    )
    body = response.json()
    assert body["data"] is None
    assert body["extensions"]["rolledBack"] is True
    assert await committed(database_url, ward, "RB-A") == 0
    assert await committed(database_url, ward, "RB-B") == 0


DEFERRED = """
CREATE FUNCTION test_refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.mrn LIKE 'RB-COMMIT%' THEN RAISE EXCEPTION 'refused at commit'; END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER test_refuse_at_commit AFTER INSERT ON patient
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_refuse_at_commit();
"""


@pytest.fixture
async def refused_at_commit(database_url: str) -> AsyncIterator[None]:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(DEFERRED)
        yield
    finally:
        await conn.execute(
            "DROP TRIGGER test_refuse_at_commit ON patient; DROP FUNCTION test_refuse_at_commit();"
        )
        await conn.close()


async def test_a_failed_commit_is_never_answered_as_success(
    client: httpx.AsyncClient, ward: Hospital, database_url: str, refused_at_commit: None
) -> None:
    variables = {"input": {"mrn": "RB-COMMIT", "givenName": "Co", "familyName": "Mit"}}
    response = await client.post(
        "/graphql",
        json={"query": CREATE_PATIENT, "variables": variables},
        headers={"Authorization": f"Bearer {token(ward)}", "Idempotency-Key": "rb-commit"},
    )
    assert response.status_code == 500
    body = response.json()
    assert "data" not in body
    assert body["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert "not saved" in body["errors"][0]["message"]
    assert await committed(database_url, ward, "RB-COMMIT") == 0
