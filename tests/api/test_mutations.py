"""Patient and encounter mutations, atomicity per field, and input the schema refuses."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from hms.persistence import patient_writes
from tests import fixtures
from tests.api.writes import (
    CREATE_PATIENT,
    RECORD_ENCOUNTER,
    SCHEDULE,
    UPDATE_PATIENT,
    at,
    codes,
    gid,
    rows,
    run,
)
from tests.conftest import NOW, GraphQL

Hospital = fixtures.HospitalData


def new_patient(mrn: str, **extra: Any) -> dict[str, Any]:
    return {"mrn": mrn, "givenName": "Ada", "familyName": "Lovelace", **extra}


async def test_create_patient_returns_the_fresh_row(
    gql: GraphQL, ward: Hospital, database_url: str
) -> None:
    payload = await run(
        gql,
        ward,
        CREATE_PATIENT,
        new_patient(
            " C-001 ",
            birthDate="1990-12-10",
            gender="FEMALE",
            email="ada@example.org",
            phone="+44 20 7946 0958",
        ),
    )
    assert payload["userErrors"] == []
    patient = payload["patient"]
    assert patient["mrn"] == "C-001"  # trimmed
    assert (patient["gender"], patient["version"], patient["active"]) == ("FEMALE", 1, True)
    stored = await rows(
        database_url, "SELECT hospital_id, email, phone FROM patient WHERE mrn = 'C-001'"
    )
    assert [(r["hospital_id"], r["email"], r["phone"]) for r in stored] == [
        (ward.id, "ada@example.org", "+44 20 7946 0958")
    ]
    read = await gql(
        "query($id: ID!) { patient(id: $id) { mrn } }", {"id": patient["id"]}, hospital=ward
    )
    assert read["data"]["patient"] == {"mrn": "C-001"}


@pytest.mark.parametrize(
    ("extra", "field", "message"),
    [
        ({"givenName": "  "}, "givenName", "empty"),
        ({"familyName": "x" * 101}, "familyName", "100"),
        ({"mrn": ""}, "mrn", "empty"),
        ({"mrn": "M" * 33}, "mrn", "32"),
        ({"mrn": "has space"}, "mrn", "letters"),
        ({"email": "not-an-email"}, "email", "email"),
        ({"email": "a@b"}, "email", "email"),
        ({"phone": "12-34"}, "phone", "digits"),
        ({"phone": "call me"}, "phone", "digits"),
        ({"birthDate": (NOW.date() + dt.timedelta(days=1)).isoformat()}, "birthDate", "future"),
    ],
)
async def test_create_patient_validation(
    gql: GraphQL, ward: Hospital, extra: dict[str, Any], field: str, message: str
) -> None:
    payload = await run(gql, ward, CREATE_PATIENT, {**new_patient("C-VAL"), **extra})
    assert payload["patient"] is None
    assert codes(payload) == [(["input", field], "VALIDATION")]
    assert message in payload["userErrors"][0]["message"]


async def test_every_broken_rule_is_reported_at_once(gql: GraphQL, ward: Hospital) -> None:
    payload = await run(
        gql, ward, CREATE_PATIENT, {"mrn": "", "givenName": "", "familyName": "", "email": "x"}
    )
    fields = {e["field"][1] for e in payload["userErrors"]}
    assert fields == {"mrn", "givenName", "familyName", "email"}


async def test_duplicate_mrn_is_a_validation_error_on_mrn(
    gql: GraphQL, ward: Hospital, dataset: fixtures.Dataset
) -> None:
    assert (await run(gql, ward, CREATE_PATIENT, new_patient("C-DUP")))["userErrors"] == []
    again = await run(gql, ward, CREATE_PATIENT, new_patient("C-DUP"))
    assert again["patient"] is None
    assert codes(again) == [(["input", "mrn"], "VALIDATION")]
    # MRNs are unique per hospital only: alpha's A00001 is free here.
    other = await run(gql, ward, CREATE_PATIENT, new_patient("A00001"))
    assert other["userErrors"] == []


async def test_update_patient_moves_the_version_and_refuses_stale_ones(
    gql: GraphQL, ward: Hospital, database_url: str
) -> None:
    created = (await run(gql, ward, CREATE_PATIENT, new_patient("C-UPD", email="a@b.org")))[
        "patient"
    ]
    first = await run(
        gql,
        ward,
        UPDATE_PATIENT,
        {"id": created["id"], "expectedVersion": 1, "familyName": "Byron", "email": None},
    )
    assert first["userErrors"] == []
    assert (first["patient"]["familyName"], first["patient"]["version"]) == ("Byron", 2)
    stored = await rows(database_url, "SELECT email FROM patient WHERE mrn = 'C-UPD'")
    assert stored[0]["email"] is None  # an explicit null clears
    second = await run(
        gql, ward, UPDATE_PATIENT, {"id": created["id"], "expectedVersion": 2, "active": False}
    )
    assert (second["patient"]["active"], second["patient"]["version"]) == (False, 3)
    stale = await run(
        gql, ward, UPDATE_PATIENT, {"id": created["id"], "expectedVersion": 2, "givenName": "X"}
    )
    assert stale["patient"] is None
    assert codes(stale) == [(["input", "expectedVersion"], "VERSION_CONFLICT")]
    assert stale["userErrors"][0]["currentVersion"] == 3
    assert "current version is 3" in stale["userErrors"][0]["message"]


async def test_update_patient_rules(gql: GraphQL, ward: Hospital) -> None:
    a = (await run(gql, ward, CREATE_PATIENT, new_patient("C-R1")))["patient"]
    await run(gql, ward, CREATE_PATIENT, new_patient("C-R2"))
    cases: list[tuple[dict[str, Any], list[tuple[list[str], str]]]] = [
        ({"mrn": "C-R2"}, [(["input", "mrn"], "VALIDATION")]),
        ({"givenName": None}, [(["input", "givenName"], "VALIDATION")]),
        ({"familyName": ""}, [(["input", "familyName"], "VALIDATION")]),
        ({}, [(["input", "id"], "VALIDATION")]),
        (
            {"email": "nope", "expectedVersion": 0},
            [
                (["input", "expectedVersion"], "VALIDATION"),
                (["input", "email"], "VALIDATION"),
            ],
        ),
    ]
    for change, expected in cases:
        payload = await run(
            gql, ward, UPDATE_PATIENT, {"id": a["id"], "expectedVersion": 1, **change}
        )
        assert codes(payload) == expected, change
    # None of the refused updates changed anything.
    ok = await run(
        gql, ward, UPDATE_PATIENT, {"id": a["id"], "expectedVersion": 1, "active": False}
    )
    assert ok["patient"]["version"] == 2


@pytest.mark.parametrize("which", ["foreign", "malformed", "wrong-type", "missing"])
async def test_update_patient_unknown_ids_are_not_found(
    gql: GraphQL, ward: Hospital, dataset: fixtures.Dataset, which: str
) -> None:
    from hms.models.ids import uuid7

    patient_id = {
        "foreign": gid("Patient", dataset.beta.patients[0]),
        "malformed": "not-an-id",
        "wrong-type": gid("Practitioner", ward.practitioners[0]),
        "missing": gid("Patient", uuid7()),
    }[which]
    payload = await run(
        gql, ward, UPDATE_PATIENT, {"id": patient_id, "expectedVersion": 1, "givenName": "Eve"}
    )
    assert codes(payload) == [(["input", "id"], "NOT_FOUND")]
    assert payload["userErrors"][0]["message"] == "No patient with this id"


async def test_record_encounter(gql: GraphQL, ward: Hospital, dataset: fixtures.Dataset) -> None:
    patient, other = (gid("Patient", p) for p in ward.patients)
    practitioner = gid("Practitioner", ward.practitioners[5])
    booked = await run(
        gql,
        ward,
        SCHEDULE,
        {
            "patientId": patient,
            "practitionerId": practitioner,
            "startAt": at(40),
            "endAt": at(40, 1),
        },
    )
    appointment = booked["appointment"]["id"]
    base = {"patientId": patient, "class": "AMB", "status": "FINISHED", "periodStart": at(40)}

    ok = await run(
        gql,
        ward,
        RECORD_ENCOUNTER,
        {
            **base,
            "appointmentId": appointment,
            "practitionerId": practitioner,
            "periodEnd": at(40, 1),
            "reason": "check-up",
        },
    )
    assert ok["userErrors"] == []
    encounter = ok["encounter"]
    assert (encounter["class"], encounter["status"], encounter["version"]) == ("AMB", "FINISHED", 1)
    assert encounter["appointment"] == {"id": appointment}
    assert encounter["practitioner"] == {"id": practitioner}
    open_ended = await run(gql, ward, RECORD_ENCOUNTER, {**base, "status": "IN_PROGRESS"})
    assert open_ended["encounter"]["periodEnd"] is None

    foreign_appointment = gid("Appointment", next(iter(dataset.alpha.appointments.values()))[0])
    for change, expected in [
        ({"periodEnd": at(39)}, [(["input", "periodEnd"], "VALIDATION")]),
        (
            {"patientId": other, "appointmentId": appointment},
            [(["input", "appointmentId"], "VALIDATION")],
        ),
        ({"appointmentId": foreign_appointment}, [(["input", "appointmentId"], "NOT_FOUND")]),
        (
            {"patientId": gid("Patient", dataset.beta.patients[0])},
            [(["input", "patientId"], "NOT_FOUND")],
        ),
        (
            {"practitionerId": gid("Practitioner", dataset.beta.practitioners[0])},
            [(["input", "practitionerId"], "NOT_FOUND")],
        ),
    ]:
        payload = await run(gql, ward, RECORD_ENCOUNTER, {**base, **change})
        assert payload["encounter"] is None
        assert codes(payload) == expected, change
    # A time without a UTC offset never reaches the resolver (the DateTime scalar refuses it).
    naive = await gql(
        RECORD_ENCOUNTER, {"input": {**base, "periodStart": "2027-03-01T09:00:00"}}, hospital=ward
    )
    assert "data" not in naive
    assert naive["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "periodStart" in naive["errors"][0]["message"]


async def test_a_failing_field_leaves_earlier_and_later_fields_written(
    gql: GraphQL, ward: Hospital, database_url: str
) -> None:
    """Fields run serially, each in its own savepoint: one failure poisons nothing else."""
    body = await gql(
        """mutation {
          a: createPatient(input: {mrn: "C-M1", givenName: "A", familyName: "One"}) { ...out }
          b: createPatient(input: {mrn: "C-M1", givenName: "B", familyName: "Two"}) { ...out }
          c: createPatient(input: {mrn: "C-M2", givenName: "C", familyName: "Three"}) { ...out }
        }
        fragment out on CreatePatientPayload { patient { mrn } userErrors { code } }""",
        hospital=ward,
    )
    assert body == {
        "data": {
            "a": {"patient": {"mrn": "C-M1"}, "userErrors": []},
            "b": {"patient": None, "userErrors": [{"code": "VALIDATION"}]},
            "c": {"patient": {"mrn": "C-M2"}, "userErrors": []},
        }
    }
    stored = await rows(
        database_url,
        "SELECT mrn, family_name FROM patient WHERE hospital_id = $1 AND mrn LIKE 'C-M%'"
        " ORDER BY mrn",
        ward.id,
    )
    assert [tuple(r) for r in stored] == [("C-M1", "One"), ("C-M2", "Three")]


async def test_a_failure_after_the_first_statement_leaves_nothing(
    gql: GraphQL, ward: Hospital, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_update = patient_writes.update_
    created = (await run(gql, ward, CREATE_PATIENT, new_patient("C-INJ")))["patient"]

    async def update_then_fail(*args: Any, **kwargs: Any) -> Any:
        await real_update(*args, **kwargs)  # the UPDATE ran in the database …
        raise RuntimeError("injected failure")  # … and then the process stumbles

    monkeypatch.setattr(patient_writes, "update_", update_then_fail)
    body = await gql(
        UPDATE_PATIENT,
        {"input": {"id": created["id"], "expectedVersion": 1, "familyName": "Half"}},
        hospital=ward,
    )
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    stored = await rows(
        database_url, "SELECT family_name, version FROM patient WHERE mrn = 'C-INJ'"
    )
    assert [tuple(r) for r in stored] == [("Lovelace", 1)]


@pytest.mark.parametrize(
    ("input_", "fragment"),
    [
        ({"mrn": "C-X", "givenName": "A", "familyName": "B", "gender": "ROBOT"}, "gender"),
        (
            {"mrn": "C-X", "givenName": "A", "familyName": "B", "birthDate": "1990-13-45"},
            "birthDate",
        ),
        ({"mrn": "C-X", "givenName": "A"}, "familyName"),
    ],
)
async def test_malformed_input_is_a_graphql_error_without_data(
    gql: GraphQL, ward: Hospital, input_: dict[str, Any], fragment: str
) -> None:
    body = await gql(CREATE_PATIENT, {"input": input_}, hospital=ward)
    assert "data" not in body
    assert fragment in body["errors"][0]["message"]
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_bad_datetime_is_a_graphql_error(gql: GraphQL, ward: Hospital) -> None:
    body = await gql(
        SCHEDULE,
        {
            "input": {
                "patientId": gid("Patient", ward.patients[0]),
                "practitionerId": gid("Practitioner", ward.practitioners[0]),
                "startAt": "next tuesday",
                "endAt": at(41),
            }
        },
        hospital=ward,
    )
    assert "data" not in body
    assert "startAt" in body["errors"][0]["message"]
