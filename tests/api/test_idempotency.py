"""Idempotent retries: one Idempotency-Key, one execution, whatever the network does."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from hms.persistence.database import Database
from hms.security.tokens import issue
from hms.settings import Settings
from tests import fixtures
from tests.api.writes import SCHEDULE, at, gid, rows
from tests.conftest import SECRET, token

Hospital = fixtures.HospitalData


def booking(ward: Hospital, day: int, practitioner: int = 0) -> dict[str, Any]:
    return {
        "query": SCHEDULE,
        "variables": {
            "input": {
                "patientId": gid("Patient", ward.patients[0]),
                "practitionerId": gid("Practitioner", ward.practitioners[practitioner]),
                "startAt": at(day, 1),
                "endAt": at(day, 1, 30),
            }
        },
    }


def headers(ward: Hospital, key: str | None, subject_roles: str = "clinician") -> dict[str, str]:
    result = {"Authorization": f"Bearer {token(ward, subject_roles)}"}
    if key is not None:
        result["Idempotency-Key"] = key
    return result


async def count_bookings(database_url: str, ward: Hospital, day: int) -> int:
    found = await rows(
        database_url,
        "SELECT count(*) AS n FROM appointment WHERE hospital_id = $1 AND start_at = $2",
        ward.id,
        dt.datetime.fromisoformat(at(day, 1)),
    )
    return int(found[0]["n"])


async def test_a_retry_returns_the_stored_response_and_books_once(
    client: httpx.AsyncClient, ward: Hospital, database_url: str
) -> None:
    key = str(uuid.uuid4())
    first = await client.post("/graphql", json=booking(ward, 40), headers=headers(ward, key))
    retry = await client.post("/graphql", json=booking(ward, 40), headers=headers(ward, key))
    assert first.status_code == retry.status_code == 200
    assert first.json()["data"]["scheduleAppointment"]["userErrors"] == []
    assert retry.content == first.content
    assert retry.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await count_bookings(database_url, ward, 40) == 1


async def test_without_a_key_a_retry_runs_again(
    client: httpx.AsyncClient, ward: Hospital, database_url: str
) -> None:
    await client.post("/graphql", json=booking(ward, 41), headers=headers(ward, None))
    again = await client.post("/graphql", json=booking(ward, 41), headers=headers(ward, None))
    codes = [e["code"] for e in again.json()["data"]["scheduleAppointment"]["userErrors"]]
    assert codes == ["SLOT_TAKEN"]
    assert await count_bookings(database_url, ward, 41) == 1


async def test_same_key_different_body_is_422(
    client: httpx.AsyncClient, ward: Hospital, database_url: str
) -> None:
    key = str(uuid.uuid4())
    await client.post("/graphql", json=booking(ward, 42), headers=headers(ward, key))
    other = await client.post("/graphql", json=booking(ward, 43), headers=headers(ward, key))
    assert other.status_code == 422
    body = other.json()
    assert "data" not in body
    assert body["errors"][0]["extensions"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert await count_bookings(database_url, ward, 43) == 0


async def test_keys_are_per_principal(
    client: httpx.AsyncClient, ward: Hospital, database_url: str, dataset: fixtures.Dataset
) -> None:
    """Another caller's identical key is a different key: it never replays someone else's data."""
    key = "shared-key"
    mine = await client.post("/graphql", json=booking(ward, 44), headers=headers(ward, key))
    theirs = await client.post(
        "/graphql",
        json=booking(ward, 44),
        headers={**headers(ward, key), "Authorization": f"Bearer {token(dataset.alpha)}"},
    )
    assert "idempotent-replayed" not in theirs.headers
    assert theirs.content != mine.content  # alpha cannot see ward's rows: NOT_FOUND, not a replay
    # A colleague in the same hospital with the same key and body: their own request, executed
    # (the slot is taken by now), never the first caller's stored answer.
    colleague = issue(SECRET, subject="colleague", hospital_id=ward.id, roles=["front_desk"])
    again = await client.post(
        "/graphql",
        json=booking(ward, 44),
        headers={"Authorization": f"Bearer {colleague}", "Idempotency-Key": key},
    )
    assert "idempotent-replayed" not in again.headers
    codes = [e["code"] for e in again.json()["data"]["scheduleAppointment"]["userErrors"]]
    assert codes == ["SLOT_TAKEN"]
    assert await count_bookings(database_url, ward, 44) == 1


async def test_concurrent_retries_execute_once(
    client: httpx.AsyncClient, ward: Hospital, database_url: str
) -> None:
    key = str(uuid.uuid4())
    responses = await asyncio.gather(
        *(
            client.post("/graphql", json=booking(ward, 45, 1), headers=headers(ward, key))
            for _ in range(20)
        )
    )
    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1  # everyone got the one stored answer
    assert sum("idempotent-replayed" in r.headers for r in responses) == 19
    assert responses[0].json()["data"]["scheduleAppointment"]["userErrors"] == []
    assert await count_bookings(database_url, ward, 45) == 1


async def test_expired_keys_are_taken_over(
    client: httpx.AsyncClient, ward: Hospital, database_url: str
) -> None:
    key = str(uuid.uuid4())
    await client.post("/graphql", json=booking(ward, 46), headers=headers(ward, key))
    await rows(
        database_url,
        "UPDATE idempotency_key SET created_at = now() - interval '25 hours' WHERE key = $1",
        key,
    )
    later = await client.post("/graphql", json=booking(ward, 47), headers=headers(ward, key))
    assert later.status_code == 200
    assert "idempotent-replayed" not in later.headers
    assert await count_bookings(database_url, ward, 47) == 1


@pytest.mark.parametrize("key", [b"", b"x" * 256, b"tab\tkey", "ключ".encode()])
async def test_malformed_keys_are_refused(
    client: httpx.AsyncClient, ward: Hospital, key: bytes
) -> None:
    response = await client.post(
        "/graphql",
        json=booking(ward, 48),
        headers=[
            *((name.encode(), value.encode()) for name, value in headers(ward, None).items()),
            (b"Idempotency-Key", key),
        ],
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_IDEMPOTENCY_KEY"


async def test_key_rows_are_tenant_isolated(ward: Hospital, settings: Settings) -> None:
    database = Database.from_settings(settings)
    db = database.request(uuid.uuid4(), readonly=True)
    try:
        assert await db.scalar(text("SELECT count(*) FROM idempotency_key")) == 0
    finally:
        await db.close()
        await database.dispose()
