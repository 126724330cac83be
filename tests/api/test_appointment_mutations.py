"""Booking mutations: no double booking under concurrency, FHIR transitions, versions."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import httpx
import pytest

from hms.models.ids import uuid7
from tests import fixtures
from tests.api.writes import (
    CANCEL,
    RESCHEDULE,
    SCHEDULE,
    SET_STATUS,
    at,
    codes,
    gid,
    rows,
    run,
)
from tests.conftest import GraphQL, token

Hospital = fixtures.HospitalData


def booking(ward: Hospital, day: int, *, practitioner: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "patientId": gid("Patient", ward.patients[0]),
        "practitionerId": gid("Practitioner", ward.practitioners[practitioner]),
        "startAt": at(day, 1),
        "endAt": at(day, 1, 30),
        **extra,
    }


async def book(gql: GraphQL, ward: Hospital, day: int, **extra: Any) -> dict[str, Any]:
    payload = await run(gql, ward, SCHEDULE, booking(ward, day, **extra))
    assert payload["userErrors"] == [], payload
    appointment: dict[str, Any] = payload["appointment"]
    return appointment


async def test_schedule_returns_the_booking(gql: GraphQL, ward: Hospital) -> None:
    appointment = await book(gql, ward, 1, reason=" follow-up ")
    assert appointment["status"] == "BOOKED"
    assert appointment["version"] == 1
    assert appointment["reason"] == "follow-up"
    assert appointment["startAt"] == at(1, 1)
    assert appointment["practitioner"] == {"id": gid("Practitioner", ward.practitioners[0])}


async def test_fifty_concurrent_bookings_of_one_slot_yield_one(
    client: httpx.AsyncClient, ward: Hospital, database_url: str
) -> None:
    """Overlapping requests race through the HTTP app; the exclusion constraint picks one."""
    practitioner = ward.practitioners[1]

    async def attempt(i: int) -> dict[str, Any]:
        # Every window starts within 59 minutes of the others and lasts an hour: all overlap.
        variables = {
            "input": {
                "patientId": gid("Patient", ward.patients[i % 2]),
                "practitionerId": gid("Practitioner", practitioner),
                "startAt": at(2, minutes=i),
                "endAt": at(2, 1, minutes=i),
            }
        }
        response = await client.post(
            "/graphql",
            json={"query": SCHEDULE, "variables": variables},
            headers={"Authorization": f"Bearer {token(ward)}"},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert "errors" not in body, body
        payload: dict[str, Any] = body["data"]["scheduleAppointment"]
        return payload

    payloads = await asyncio.gather(*(attempt(i) for i in range(60)))
    booked = [p for p in payloads if p["appointment"] is not None]
    refused = [p for p in payloads if p["appointment"] is None]
    assert len(booked) == 1
    assert len(refused) == 59
    assert all(codes(p) == [(["input", "startAt"], "SLOT_TAKEN")] for p in refused)
    stored = await rows(
        database_url,
        "SELECT id FROM appointment WHERE hospital_id = $1 AND practitioner_id = $2",
        ward.id,
        practitioner,
    )
    assert len(stored) == 1
    assert gid("Appointment", stored[0]["id"]) == booked[0]["appointment"]["id"]


@pytest.mark.parametrize(
    ("extra", "field", "message"),
    [
        ({"endAt": at(3, 1)}, "endAt", "after startAt"),
        ({"endAt": at(3, 0, 30)}, "endAt", "after startAt"),
        ({"endAt": at(3, 9, 1)}, "endAt", "at most 8 hours"),
        ({"status": "ARRIVED"}, "status", "PROPOSED, PENDING, BOOKED, WAITLIST"),
        ({"reason": "r" * 1001}, "reason", "1000"),
    ],
)
async def test_schedule_validation(
    gql: GraphQL, ward: Hospital, extra: dict[str, Any], field: str, message: str
) -> None:
    payload = await run(gql, ward, SCHEDULE, booking(ward, 3, **extra))
    assert payload["appointment"] is None
    assert codes(payload) == [(["input", field], "VALIDATION")]
    assert message in payload["userErrors"][0]["message"]


async def test_a_datetime_without_offset_is_refused_before_any_write(
    gql: GraphQL, ward: Hospital
) -> None:
    body = await gql(SCHEDULE, {"input": booking(ward, 3, startAt="2027-03-04T10:00:00")})
    assert "data" not in body
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "startAt" in error["message"]
    assert "UTC offset" in error["message"]


async def test_eight_hours_is_allowed(gql: GraphQL, ward: Hospital) -> None:
    appointment = await book(gql, ward, 3, practitioner=2, endAt=at(3, 9))
    assert appointment["endAt"] == at(3, 9)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("patientId", "foreign"),
        ("practitionerId", "foreign"),
        ("patientId", "malformed"),
        ("practitionerId", "wrong-type"),
        ("patientId", "missing"),
    ],
)
async def test_schedule_with_unknown_ids_is_not_found(
    gql: GraphQL,
    ward: Hospital,
    dataset: fixtures.Dataset,
    database_url: str,
    field: str,
    value: str,
) -> None:
    type_name = "Patient" if field == "patientId" else "Practitioner"
    foreign = (dataset.beta.patients if type_name == "Patient" else dataset.beta.practitioners)[0]
    global_id = {
        "foreign": gid(type_name, foreign),
        "malformed": "%%%",
        "wrong-type": gid("Patient", ward.patients[0]),
        "missing": gid(type_name, uuid7()),
    }[value]
    input_ = booking(ward, 4)
    input_[field] = global_id
    payload = await run(gql, ward, SCHEDULE, input_)
    assert codes(payload) == [(["input", field], "NOT_FOUND")]
    assert payload["userErrors"][0]["message"] == f"No {type_name.lower()} with this id"
    assert await rows(database_url, "SELECT 1 FROM appointment WHERE start_at = $1", _ts(4)) == []


def _ts(day: int) -> dt.datetime:
    return dt.datetime.fromisoformat(at(day, 1))


async def test_reschedule(gql: GraphQL, ward: Hospital) -> None:
    first = await book(gql, ward, 5)
    second = await book(gql, ward, 5, startAt=at(5, 2), endAt=at(5, 3))
    into_taken = await run(
        gql,
        ward,
        RESCHEDULE,
        {"id": first["id"], "expectedVersion": 1, "startAt": at(5, 2, 30), "endAt": at(5, 3, 30)},
    )
    assert codes(into_taken) == [(["input", "startAt"], "SLOT_TAKEN")]
    moved = await run(
        gql,
        ward,
        RESCHEDULE,
        {"id": first["id"], "expectedVersion": 1, "startAt": at(5, 4), "endAt": at(5, 5)},
    )
    assert moved["userErrors"] == []
    assert (moved["appointment"]["startAt"], moved["appointment"]["version"]) == (at(5, 4), 2)
    stale = await run(
        gql,
        ward,
        RESCHEDULE,
        {"id": first["id"], "expectedVersion": 1, "startAt": at(5, 6), "endAt": at(5, 7)},
    )
    assert codes(stale) == [(["input", "expectedVersion"], "VERSION_CONFLICT")]
    assert stale["userErrors"][0]["currentVersion"] == 2
    # The freed old window is bookable again.
    await book(gql, ward, 5)
    bad = await run(
        gql,
        ward,
        RESCHEDULE,
        {"id": second["id"], "expectedVersion": 1, "startAt": at(5, 3), "endAt": at(5, 2)},
    )
    assert codes(bad) == [(["input", "endAt"], "VALIDATION")]
    cancelled = await run(gql, ward, CANCEL, {"id": second["id"], "reason": "ill"})
    assert cancelled["appointment"]["version"] == 2
    refused = await run(
        gql,
        ward,
        RESCHEDULE,
        {"id": second["id"], "expectedVersion": 2, "startAt": at(5, 8), "endAt": at(5, 9)},
    )
    assert codes(refused) == [(["input", "id"], "VALIDATION")]
    assert "CANCELLED cannot be rescheduled" in refused["userErrors"][0]["message"]


@pytest.mark.parametrize("how", ["cancel", "NOSHOW", "ENTERED_IN_ERROR"])
async def test_cancelled_noshow_and_voided_free_the_slot(
    gql: GraphQL, ward: Hospital, how: str
) -> None:
    day = {"cancel": 6, "NOSHOW": 7, "ENTERED_IN_ERROR": 8}[how]
    appointment = await book(gql, ward, day)
    assert codes(await run(gql, ward, SCHEDULE, booking(ward, day))) == [
        (["input", "startAt"], "SLOT_TAKEN")
    ]
    if how == "cancel":
        payload = await run(
            gql, ward, CANCEL, {"id": appointment["id"], "reason": "patient called"}
        )
        assert payload["appointment"]["cancellationReason"] == "patient called"
    else:
        payload = await run(
            gql, ward, SET_STATUS, {"id": appointment["id"], "status": how, "expectedVersion": 1}
        )
    assert payload["userErrors"] == []
    assert payload["appointment"]["version"] == 2
    again = await book(gql, ward, day)
    assert again["id"] != appointment["id"]


async def test_cancel_rules(gql: GraphQL, ward: Hospital) -> None:
    appointment = await book(gql, ward, 9)
    cases: list[tuple[dict[str, Any], list[tuple[list[str], str]]]] = [
        ({"reason": "  "}, [(["input", "reason"], "VALIDATION")]),
        (
            {"reason": "x", "expectedVersion": 7},
            [(["input", "expectedVersion"], "VERSION_CONFLICT")],
        ),
        ({"reason": "x", "id": gid("Appointment", uuid7())}, [(["input", "id"], "NOT_FOUND")]),
    ]
    for change, expected in cases:
        payload = await run(gql, ward, CANCEL, {"id": appointment["id"], **change})
        assert codes(payload) == expected, change
    done = await run(
        gql, ward, CANCEL, {"id": appointment["id"], "reason": "x", "expectedVersion": 1}
    )
    assert done["appointment"]["status"] == "CANCELLED"
    twice = await run(gql, ward, CANCEL, {"id": appointment["id"], "reason": "x"})
    assert codes(twice) == [(["input", "id"], "VALIDATION")]
    assert "allowed next statuses: ENTERED_IN_ERROR" in twice["userErrors"][0]["message"]


async def test_status_follows_the_fhir_workflow(gql: GraphQL, ward: Hospital) -> None:
    appointment = await book(gql, ward, 10)
    illegal = await run(
        gql,
        ward,
        SET_STATUS,
        {"id": appointment["id"], "status": "FULFILLED", "expectedVersion": 1},
    )
    assert codes(illegal) == [(["input", "status"], "VALIDATION")]
    assert illegal["userErrors"][0]["message"] == (
        "An appointment cannot go from BOOKED to FULFILLED; allowed next statuses: "
        "ARRIVED, CHECKED_IN, CANCELLED, NOSHOW, ENTERED_IN_ERROR"
    )
    for version, status in enumerate(["ARRIVED", "CHECKED_IN", "FULFILLED", "ENTERED_IN_ERROR"], 1):
        payload = await run(
            gql,
            ward,
            SET_STATUS,
            {"id": appointment["id"], "status": status, "expectedVersion": version},
        )
        assert payload["userErrors"] == []
        assert (payload["appointment"]["status"], payload["appointment"]["version"]) == (
            status,
            version + 1,
        )
    final = await run(
        gql, ward, SET_STATUS, {"id": appointment["id"], "status": "BOOKED", "expectedVersion": 5}
    )
    assert (
        "from ENTERED_IN_ERROR to BOOKED; allowed next statuses: none"
        in (final["userErrors"][0]["message"])
    )
    stale = await run(
        gql, ward, SET_STATUS, {"id": appointment["id"], "status": "BOOKED", "expectedVersion": 1}
    )
    assert codes(stale) == [(["input", "expectedVersion"], "VERSION_CONFLICT")]
    cancel = await run(
        gql,
        ward,
        SET_STATUS,
        {"id": appointment["id"], "status": "CANCELLED", "expectedVersion": 5},
    )
    assert codes(cancel) == [(["input", "status"], "VALIDATION")]


async def test_activating_a_waitlisted_booking_into_a_taken_slot(
    gql: GraphQL, ward: Hospital
) -> None:
    await book(gql, ward, 11)
    waiting = await book(gql, ward, 11, status="WAITLIST")  # not active: overlap allowed
    payload = await run(
        gql, ward, SET_STATUS, {"id": waiting["id"], "status": "BOOKED", "expectedVersion": 1}
    )
    assert codes(payload) == [(["input", "startAt"], "SLOT_TAKEN")]


async def test_same_response_sees_each_write(gql: GraphQL, ward: Hospital) -> None:
    """Loaders are refreshed after each field, so the second field never shows stale counts."""
    selection = "appointment { patient { appointments(first: 5) { totalCount } } }"
    patient = gid("Patient", ward.patients[1])
    practitioner = gid("Practitioner", ward.practitioners[3])
    body = await gql(
        f"""mutation($p: ID!, $d: ID!, $s1: DateTime!, $e1: DateTime!, $s2: DateTime!,
                     $e2: DateTime!) {{
          a: scheduleAppointment(input: {{patientId: $p, practitionerId: $d, startAt: $s1,
                                          endAt: $e1}}) {{ {selection} }}
          b: scheduleAppointment(input: {{patientId: $p, practitionerId: $d, startAt: $s2,
                                          endAt: $e2}}) {{ {selection} }}
        }}""",
        {
            "p": patient,
            "d": practitioner,
            "s1": at(12),
            "e1": at(12, 1),
            "s2": at(12, 2),
            "e2": at(12, 3),
        },
        hospital=ward,
    )
    assert "errors" not in body, body
    count = [body["data"][k]["appointment"]["patient"]["appointments"]["totalCount"] for k in "ab"]
    assert count[1] == count[0] + 1


async def test_a_slot_taken_field_does_not_undo_the_one_before(
    gql: GraphQL, ward: Hospital, database_url: str
) -> None:
    body = await gql(
        """mutation($one: ScheduleAppointmentInput!, $two: ScheduleAppointmentInput!) {
          a: scheduleAppointment(input: $one) { appointment { id } userErrors { code } }
          b: scheduleAppointment(input: $two) { appointment { id } userErrors { code } }
        }""",
        {"one": booking(ward, 13), "two": booking(ward, 13)},
        hospital=ward,
    )
    assert body["data"]["b"] == {"appointment": None, "userErrors": [{"code": "SLOT_TAKEN"}]}
    stored = await rows(database_url, "SELECT id FROM appointment WHERE start_at = $1", _ts(13))
    assert [gid("Appointment", r["id"]) for r in stored] == [body["data"]["a"]["appointment"]["id"]]
