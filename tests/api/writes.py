"""Support for the mutation tests: a private hospital per test module, and query helpers.

Mutations create rows, so they run in a hospital of their own: the read tests' exact counts for
alpha and beta stay true whatever order the tests run in.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

from hms.models.ids import uuid7
from hms.resolvers.relay import to_global_id
from tests import fixtures
from tests.conftest import GraphQL

#: Far from the fixture dataset's schedule; each test books on its own day.
DAY0 = dt.datetime(2027, 3, 1, 9, 0, tzinfo=dt.UTC)

USER_ERRORS = "userErrors { field message code currentVersion }"
PATIENT = f"patient {{ id mrn givenName familyName birthDate gender active version }} {USER_ERRORS}"
APPOINTMENT = (
    "appointment { id status startAt endAt reason cancellationReason version"
    f" patient {{ id }} practitioner {{ id }} }} {USER_ERRORS}"
)


def mutation(name: str, input_type: str, selection: str) -> str:
    return f"mutation($input: {input_type}!) {{ {name}(input: $input) {{ {selection} }} }}"


CREATE_PATIENT = mutation("createPatient", "CreatePatientInput", PATIENT)
UPDATE_PATIENT = mutation("updatePatient", "UpdatePatientInput", PATIENT)
SCHEDULE = mutation("scheduleAppointment", "ScheduleAppointmentInput", APPOINTMENT)
RESCHEDULE = mutation("rescheduleAppointment", "RescheduleAppointmentInput", APPOINTMENT)
CANCEL = mutation("cancelAppointment", "CancelAppointmentInput", APPOINTMENT)
SET_STATUS = mutation("setAppointmentStatus", "SetAppointmentStatusInput", APPOINTMENT)
RECORD_ENCOUNTER = mutation(
    "recordEncounter",
    "RecordEncounterInput",
    "encounter { id status class periodStart periodEnd reason version patient { id }"
    f" practitioner {{ id }} appointment {{ id }} }} {USER_ERRORS}",
)


async def make_hospital(database_url: str, practitioners: int = 6) -> fixtures.HospitalData:
    """A hospital with practitioners and two patients, inserted as the owner (no RLS)."""
    data = fixtures.HospitalData(id=uuid7(), slug=f"ward-{uuid7().hex[-10:]}")
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO hospital (id, slug, name) VALUES ($1, $2, 'Ward')", data.id, data.slug
        )
        for i in range(practitioners):
            data.practitioners.append(uuid7())
            await conn.execute(
                "INSERT INTO practitioner (hospital_id, id, given_name, family_name, specialty)"
                " VALUES ($1, $2, 'Doc', $3, 'General')",
                data.id,
                data.practitioners[-1],
                f"Ward{i}",
            )
        for i in range(2):
            data.patients.append(uuid7())
            await conn.execute(
                "INSERT INTO patient (hospital_id, id, mrn, given_name, family_name)"
                " VALUES ($1, $2, $3, 'Pat', 'Ward')",
                data.id,
                data.patients[-1],
                f"W{i}",
            )
    finally:
        await conn.close()
    return data


async def rows(database_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    """Read as the owner, around the API and its row-level security."""
    conn = await asyncpg.connect(database_url)
    try:
        result: list[asyncpg.Record] = await conn.fetch(sql, *args)
        return result
    finally:
        await conn.close()


def gid(type_name: str, pk: Any) -> str:
    return to_global_id(type_name, pk)


async def run(
    gql: GraphQL, hospital: fixtures.HospitalData, query: str, input_: dict[str, Any]
) -> dict[str, Any]:
    """Run a one-field mutation and return its payload (asserting no GraphQL errors)."""
    body = await gql(query, {"input": input_}, hospital=hospital)
    assert "errors" not in body, body
    (payload,) = body["data"].values()
    result: dict[str, Any] = payload
    return result


def codes(payload: dict[str, Any]) -> list[tuple[list[str] | None, str]]:
    return [(e["field"], e["code"]) for e in payload["userErrors"]]


def at(day: int, hour: float = 0, minutes: float = 0) -> str:
    return (DAY0 + dt.timedelta(days=day, hours=hour, minutes=minutes)).isoformat()
