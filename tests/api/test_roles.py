"""Roles decide what a caller reads and writes (issue 10, SECURITY.md).

Before, tokens of every role (and of none) read every field and ran every mutation: 42 of 42
tries allowed. Here every role reads one patient's whole chart through the HTTP app, on both
execution paths, and each field is either its value or null with a ``FORBIDDEN`` error on its
exact path, as the table below (written out here, not read from the code) says. A refused
value appears nowhere in the response. Every role then tries every mutation.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import httpx
import jwt
import pytest
from starlette.applications import Starlette

from hms.models.ids import uuid7
from hms.persistence.urls import asyncpg_dsn
from hms.security import policy
from tests import fixtures
from tests.api.test_compiled import compiled_statement
from tests.api.writes import at, gid, rows
from tests.conftest import SECRET, token
from tests.statements import recorded

ROLES = ("admin", "clinician", "front_desk", "auditor", "service")

#: Which class each role reads: the policy as intended, written out independently of the code.
INTENDED = {
    "demographic": {"admin", "clinician", "front_desk", "auditor", "service"},
    "contact": {"admin", "clinician", "front_desk", "service"},
    "clinical": {"clinician"},
    "sensitive": {"admin", "clinician", "front_desk"},
}

#: Mutation -> the roles that may run it.
WRITERS = {
    "createPatient": {"admin", "clinician", "front_desk"},
    "updatePatient": {"admin", "clinician", "front_desk"},
    "scheduleAppointment": {"admin", "clinician", "front_desk"},
    "rescheduleAppointment": {"admin", "clinician", "front_desk"},
    "cancelAppointment": {"admin", "clinician", "front_desk"},
    "setAppointmentStatus": {"admin", "clinician", "front_desk"},
    "recordEncounter": {"clinician"},
    "openEmergencyAccess": {"clinician"},
    "revealNationalId": {"admin", "clinician"},
    "requestReport": {"admin", "clinician"},
}

CHART = """
query Chart($id: ID!) {
  patient(id: $id) {
    id mrn givenName familyName gender active birthDate phone email nationalIdLast4
    appointments(first: 5) { edges { node { id status reason cancellationReason } } }
    encounters(first: 5) { edges { node { id status reason } } }
  }
}
"""

#: Stored values, each unique enough that finding it in a response means it leaked.
VALUES = {
    "birthDate": "1971-04-09",
    "phone": "+41 79 555 01 93",
    "email": "chart-7f3a@example.org",
    "nationalIdLast4": "7319",
    "appointment.reason": "recurring chest pain q7",
    "appointment.cancellationReason": "admitted to oncology q7",
    "encounter.reason": "suspected angina q7",
}

#: Where each classed leaf of CHART sits, and its class.
LEAVES: list[tuple[tuple[str | int, ...], str, str]] = [
    (("patient", "mrn"), "demographic", "mrn"),
    (("patient", "givenName"), "demographic", "givenName"),
    (("patient", "familyName"), "demographic", "familyName"),
    (("patient", "gender"), "demographic", "gender"),
    (("patient", "active"), "demographic", "active"),
    (("patient", "birthDate"), "sensitive", "birthDate"),
    (("patient", "phone"), "contact", "phone"),
    (("patient", "email"), "contact", "email"),
    (("patient", "nationalIdLast4"), "sensitive", "nationalIdLast4"),
    (
        ("patient", "appointments", "edges", 0, "node", "reason"),
        "clinical",
        "appointment.reason",
    ),
    (
        ("patient", "appointments", "edges", 0, "node", "cancellationReason"),
        "clinical",
        "appointment.cancellationReason",
    ),
    (("patient", "encounters", "edges", 0, "node", "reason"), "clinical", "encounter.reason"),
]


@pytest.fixture(scope="module")
async def chart(database_url: str, ward: fixtures.HospitalData) -> fixtures.HospitalData:
    """The ward's first patient with a full chart: contact data, a cancelled appointment, an
    encounter (written as the owner, around the API)."""
    import asyncpg

    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await conn.execute(
            "UPDATE patient SET birth_date = $3, phone = $4, email = $5, national_id_last4 = $6"
            " WHERE hospital_id = $1 AND id = $2",
            ward.id,
            ward.patients[0],
            dt.date.fromisoformat(VALUES["birthDate"]),
            VALUES["phone"],
            VALUES["email"],
            VALUES["nationalIdLast4"],
        )
        await conn.execute(
            "INSERT INTO appointment (hospital_id, id, patient_id, practitioner_id, status,"
            " start_at, end_at, reason, cancellation_reason)"
            " VALUES ($1, $2, $3, $4, 'cancelled', $5, $6, $7, $8)",
            ward.id,
            uuid7(),
            ward.patients[0],
            ward.practitioners[0],
            dt.datetime.fromisoformat(at(90, 1)),
            dt.datetime.fromisoformat(at(90, 2)),
            VALUES["appointment.reason"],
            VALUES["appointment.cancellationReason"],
        )
        await conn.execute(
            "INSERT INTO encounter (hospital_id, id, patient_id, status, class, period_start,"
            " reason) VALUES ($1, $2, $3, 'finished', 'AMB', $4, $5)",
            ward.id,
            uuid7(),
            ward.patients[0],
            dt.datetime.fromisoformat(at(91, 1)),
            VALUES["encounter.reason"],
        )
    finally:
        await conn.close()
    return ward


async def post(
    client: httpx.AsyncClient,
    hospital: fixtures.HospitalData,
    query: str,
    variables: dict[str, Any],
    *roles: str,
) -> httpx.Response:
    return await client.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token(hospital, *roles)}"},
    )


def at_path(data: Any, path: tuple[str | int, ...]) -> Any:
    for step in path:
        data = data[step]
    return data


@pytest.mark.parametrize("path", ["compiled", "interpreted"])
@pytest.mark.parametrize("role", ROLES)
async def test_every_role_reads_exactly_its_classes(
    role: str,
    path: str,
    chart: fixtures.HospitalData,
    client: httpx.AsyncClient,
    interpreted_client: httpx.AsyncClient,
    app: Starlette,
) -> None:
    http = client if path == "compiled" else interpreted_client
    variables = {"id": gid("Patient", chart.patients[0])}
    with recorded(app.state.database.primary) as statements:
        response = await post(http, chart, CHART, variables, role)
    assert response.status_code == 200
    body = response.json()
    data = body["data"]
    forbidden = set()
    for leaf_path, field_class, name in LEAVES:
        value = at_path(data, leaf_path)
        if role in INTENDED[field_class]:
            assert value is not None, (role, name)
            if name in VALUES:
                assert str(value) == VALUES[name]
        else:
            assert value is None, (role, name)
            forbidden.add(leaf_path)
            if name in VALUES:
                assert VALUES[name] not in response.text, (role, name)
    errors = body.get("errors", [])
    assert {tuple(e["path"]) for e in errors} == forbidden
    for error in errors:
        assert error["extensions"]["code"] == "FORBIDDEN"
        assert error["message"].startswith("Your role may not read")
    # Everything unclassed still arrives: ids and statuses, the two lists.
    assert data["patient"]["id"] == variables["id"]
    assert at_path(data, ("patient", "appointments", "edges", 0, "node", "status")) == "CANCELLED"
    if path == "compiled":
        # Only a caller who may read every selected field gets the one compiled statement.
        assert compiled_statement(statements) == (not forbidden), statements


async def test_a_forbidden_field_behind_a_fragment_is_still_refused(
    chart: fixtures.HospitalData, client: httpx.AsyncClient
) -> None:
    query = """
    query($id: ID!) { node(id: $id) { ...Private } }
    fragment Private on Patient { ... on Patient { phone } id }
    """
    response = await post(
        client, chart, query, {"id": gid("Patient", chart.patients[0])}, "auditor"
    )
    body = response.json()
    assert body["data"] == {"node": {"phone": None, "id": gid("Patient", chart.patients[0])}}
    assert [e["path"] for e in body["errors"]] == [["node", "phone"]]
    assert VALUES["phone"] not in response.text


async def test_lists_refuse_each_item_on_its_own_path(
    chart: fixtures.HospitalData, client: httpx.AsyncClient
) -> None:
    query = "{ patients(first: 2) { edges { node { id birthDate } } } }"
    response = await post(client, chart, query, {}, "auditor")
    body = response.json()
    assert len(body["data"]["patients"]["edges"]) == 2
    assert sorted(e["path"] for e in body["errors"]) == [
        ["patients", "edges", 0, "node", "birthDate"],
        ["patients", "edges", 1, "node", "birthDate"],
    ]


def signed(hospital: fixtures.HospitalData, roles: list[str]) -> str:
    """A correctly signed token with any roles claim (``issue`` refuses unknown roles)."""
    now = int(time.time())
    claims = {"sub": "nobody", "hospital_id": str(hospital.id), "roles": roles}
    return jwt.encode({**claims, "iat": now, "exp": now + 600}, SECRET, algorithm="HS256")


@pytest.mark.parametrize("roles", [[], ["wizard"], ["ADMIN"], ["root", "superuser"]])
async def test_a_token_without_a_known_role_is_refused_at_the_door(
    roles: list[str], chart: fixtures.HospitalData, client: httpx.AsyncClient
) -> None:
    bearer = signed(chart, roles)
    response = await client.post(
        "/graphql",
        json={"query": "{ patientStats { total } }"},
        headers={"Authorization": f"Bearer {bearer}"},
    )
    assert response.status_code == 403
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert "data" not in response.json()


async def test_an_unknown_role_beside_a_known_one_grants_nothing_more(
    chart: fixtures.HospitalData, client: httpx.AsyncClient
) -> None:
    variables = {"id": gid("Patient", chart.patients[0])}
    response = await client.post(
        "/graphql",
        json={"query": CHART, "variables": variables},
        headers={"Authorization": f"Bearer {signed(chart, ['auditor', 'superuser'])}"},
    )
    body = response.json()
    assert body["data"]["patient"]["phone"] is None
    assert VALUES["phone"] not in response.text


def mutations(
    chart: fixtures.HospitalData, day: int, version: int
) -> dict[str, tuple[str, dict[str, Any]]]:
    """One valid input per mutation, booking on ``day`` so roles never collide."""
    patient = gid("Patient", chart.patients[1])
    practitioner = gid("Practitioner", chart.practitioners[1 + day % 5])
    return {
        "createPatient": (
            "CreatePatientInput",
            {"mrn": f"R{day}-{uuid7().hex[-6:]}", "givenName": "Role", "familyName": "Test"},
        ),
        "updatePatient": (
            "UpdatePatientInput",
            {"id": patient, "expectedVersion": version, "givenName": "Renamed"},
        ),
        "scheduleAppointment": (
            "ScheduleAppointmentInput",
            {
                "patientId": patient,
                "practitionerId": practitioner,
                "startAt": at(day, 3),
                "endAt": at(day, 4),
            },
        ),
        "rescheduleAppointment": (
            "RescheduleAppointmentInput",
            {
                "id": gid("Appointment", uuid7()),
                "expectedVersion": 1,
                "startAt": at(day, 5),
                "endAt": at(day, 6),
            },
        ),
        "cancelAppointment": (
            "CancelAppointmentInput",
            {"id": gid("Appointment", uuid7()), "reason": "role test"},
        ),
        "setAppointmentStatus": (
            "SetAppointmentStatusInput",
            {"id": gid("Appointment", uuid7()), "status": "ARRIVED", "expectedVersion": 1},
        ),
        "recordEncounter": (
            "RecordEncounterInput",
            {"patientId": patient, "class": "AMB", "status": "FINISHED", "periodStart": at(day, 7)},
        ),
        "openEmergencyAccess": (
            "OpenEmergencyAccessInput",
            {"patientId": patient, "reason": "role test: emergency", "minutes": 5},
        ),
        "revealNationalId": (
            "RevealNationalIdInput",
            {"patientId": patient, "reason": "role test: identity check"},
        ),
        "requestReport": (
            "RequestReportInput",
            {"kind": "APPOINTMENTS", "from": at(day, 0), "to": at(day + 1, 0)},
        ),
    }


@pytest.mark.parametrize("role", ROLES)
async def test_every_role_runs_exactly_its_mutations(
    role: str,
    chart: fixtures.HospitalData,
    client: httpx.AsyncClient,
    database_url: str,
) -> None:
    day = 200 + ROLES.index(role)
    before = await counts(database_url, chart)
    (current,) = await rows(
        database_url,
        "SELECT version FROM patient WHERE hospital_id = $1 AND id = $2",
        chart.id,
        chart.patients[1],
    )
    for name, (input_type, input_) in mutations(chart, day, current["version"]).items():
        query = (
            f"mutation($input: {input_type}!) {{ {name}(input: $input)"
            " { userErrors { field message code } } }"
        )
        response = await post(client, chart, query, {"input": input_}, role)
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body
        codes = [e["code"] for e in body["data"][name]["userErrors"]]
        if role in WRITERS[name]:
            assert "FORBIDDEN" not in codes, (role, name)
        else:
            assert codes == ["FORBIDDEN"], (role, name)
    after = await counts(database_url, chart)
    # A new patient (version 1) and a renamed one (version + 1); a booking; an encounter; a
    # report.
    wrote = {"patient": 1, "appointment": 1, "encounter": 0, "version": 2, "report": 0}
    if role == "clinician":
        wrote["encounter"] = 1
    elif role not in ("admin", "front_desk"):
        wrote = dict.fromkeys(wrote, 0)  # nothing written, not even a version bump
    if role in ("admin", "clinician"):
        wrote["report"] = 1
    assert after == {key: before[key] + wrote[key] for key in before}


async def counts(database_url: str, chart: fixtures.HospitalData) -> dict[str, int]:
    (row,) = await rows(
        database_url,
        "SELECT (SELECT count(*) FROM patient WHERE hospital_id = $1) AS patient,"
        " (SELECT count(*) FROM appointment WHERE hospital_id = $1) AS appointment,"
        " (SELECT count(*) FROM encounter WHERE hospital_id = $1) AS encounter,"
        " (SELECT sum(version) FROM patient WHERE hospital_id = $1) AS version,"
        " (SELECT count(*) FROM report WHERE hospital_id = $1) AS report",
        chart.id,
    )
    keys = ("patient", "appointment", "encounter", "version", "report")
    return {key: int(row[key]) for key in keys}


def test_the_code_matches_the_intended_policy() -> None:
    for field_class, readers in INTENDED.items():
        cls = policy.FieldClass(field_class.upper())
        assert {r for r in policy.ROLES if cls in policy.READS[r]} == readers
    assert {m: set(r) for m, r in policy.WRITES.items()} == WRITERS


def test_a_class_some_role_may_not_read_is_only_on_nullable_fields() -> None:
    """Otherwise a refused field would null its parent (GraphQL's null propagation) and a
    whole patient would vanish from a list instead of one field."""
    from graphql import GraphQLNonNull

    from hms.schema import schema

    classes = policy.classes_from_sdl(schema.as_str())
    everyone = {c for c in policy.FieldClass if all(c in policy.READS[r] for r in policy.ROLES)}
    for (type_name, field_name), field_class in classes.items():
        if field_class in everyone:
            continue
        field = schema._schema.get_type(type_name).fields[field_name]  # type: ignore[union-attr]
        assert not isinstance(field.type, GraphQLNonNull), (type_name, field_name)


def test_security_md_shows_the_policy_the_code_enforces() -> None:
    """The tables in SECURITY.md are exactly what ``hms policy`` prints: every row, no more."""
    from pathlib import Path

    from hms.schema import schema

    table = policy.markdown(policy.classes_from_sdl(schema.as_str()))
    lines = (Path(__file__).parents[2] / "SECURITY.md").read_text().splitlines()
    start = lines.index(table.splitlines()[0])
    block: list[str] = []
    for line in lines[start:]:
        if not line.startswith("|") and block and block[-1] == "" and line != "":
            break
        block.append(line)
    shown = "\n".join(block).rstrip("\n") + "\n"
    assert shown == table, "run `hms policy` and paste its tables into SECURITY.md"
    assert sum(line.startswith("| `") for line in block) == len(policy.WRITES)  # one per mutation


def test_a_mutation_missing_from_the_policy_is_refused_to_everyone() -> None:
    for role in policy.ROLES:
        assert not policy.may_write("deleteEverything", {role})
    assert policy.write_refusal("recordEncounter") == (
        "Your role may not run recordEncounter (roles that may: clinician)"
    )
    assert policy.write_refusal("deleteEverything") == "Your role may not run deleteEverything"


async def test_an_inline_fragment_without_a_type_is_walked_too(
    chart: fixtures.HospitalData, client: httpx.AsyncClient, app: Starlette
) -> None:
    query = "query($id: ID!) { patient(id: $id) { id ... @include(if: true) { phone email } } }"
    with recorded(app.state.database.primary) as statements:
        response = await post(
            client, chart, query, {"id": gid("Patient", chart.patients[0])}, "auditor"
        )
    body = response.json()
    assert body["data"]["patient"]["phone"] is None
    assert sorted(e["path"][-1] for e in body["errors"]) == ["email", "phone"]
    assert not compiled_statement(statements)  # the compiled path left it to the interpreted
