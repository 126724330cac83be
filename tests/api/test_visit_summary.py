"""``Patient.visitSummary``: the clinical job's summary of a patient's finished encounters.

Encounters are recorded through the API; the job runs here, directly (``hms.jobs.clinical.run``
with the payload a finished encounter enqueues), as a worker would run it. The summary is null
until then, counts finished encounters only, is recomputed rather than incremented, is
clinical (null with ``FORBIDDEN`` for roles that do not read clinical fields, and on a
confidential record without an emergency grant; audited as CLINICAL), is read in one
statement for a whole page of patients, and never shows another hospital's row.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.applications import Starlette

from hms.jobs import clinical
from hms.jobs.base import JobInput, Services, tenant
from hms.persistence import jobs, visits
from hms.persistence.urls import async_url
from hms.resolvers.relay import from_global_id
from hms.security.tokens import issue
from hms.settings import Settings
from tests import fixtures
from tests.api.writes import (
    CREATE_PATIENT,
    RECORD_ENCOUNTER,
    at,
    gid,
    make_hospital,
    mutation,
    rows,
    run,
)
from tests.conftest import SECRET, GraphQL
from tests.statements import recorded

Hospital = fixtures.HospitalData

SUMMARY = "visitSummary { finishedEncounters firstVisitAt lastVisitAt totalMinutes updatedAt }"
CHART = f"query Chart($id: ID!) {{ patient(id: $id) {{ familyName {SUMMARY} }} }}"
#: Marks a patient confidential; its payload selects nothing the mark then hides.
MARK = mutation(
    "updatePatient", "UpdatePatientInput", "patient { confidential } userErrors { code }"
)
BREAK = """
mutation Break($input: OpenEmergencyAccessInput!) {
  openEmergencyAccess(input: $input) { userErrors { field code } }
}
"""
PATHS = ["compiled", "interpreted"]


@pytest.fixture(scope="module")
async def clinic(database_url: str, dataset: fixtures.Dataset) -> Hospital:
    """A hospital of this module's own: its patients' summaries are all these tests wrote."""
    return await make_hospital(database_url)


@pytest.fixture(scope="module")
async def services(
    app: Starlette, settings: Settings, database_url: str
) -> AsyncIterator[Services]:
    """What a worker gives a job, on the app's own database (the clinical job needs neither the
    owner role nor HTTP, but a worker has them)."""
    owner = create_async_engine(async_url(database_url))
    try:
        async with httpx.AsyncClient() as http:
            yield Services(settings, app.state.database, owner, http)
    finally:
        await owner.dispose()


@pytest.fixture(scope="module")
async def summarised(gql: GraphQL, clinic: Hospital, services: Services) -> uuid.UUID:
    """A patient of the clinic whose summary the job has written."""
    patient = await visited(gql, clinic, 60)
    await process(services, clinic, patient)
    return patient


def over(
    path: str, client: httpx.AsyncClient, interpreted_client: httpx.AsyncClient
) -> httpx.AsyncClient:
    return client if path == "compiled" else interpreted_client


async def process(services: Services, hospital: Hospital, patient: uuid.UUID) -> None:
    """Run the clinical job a finished encounter of ``patient`` enqueues, as a worker runs it."""
    body = jobs.payload(hospital.id, patient=str(patient), encounter=str(uuid.uuid4()))
    await clinical.run(services, JobInput.parse(1, jobs.CLINICAL.name, body, 0))


async def new_patient(gql: GraphQL, hospital: Hospital) -> uuid.UUID:
    mrn = f"V-{uuid.uuid4().hex[:8]}"
    payload = await run(
        gql, hospital, CREATE_PATIENT, {"mrn": mrn, "givenName": "Vera", "familyName": "Visit"}
    )
    assert payload["userErrors"] == []
    pk: uuid.UUID = from_global_id(payload["patient"]["id"])[1]
    return pk


async def encounter(
    gql: GraphQL,
    hospital: Hospital,
    patient: uuid.UUID,
    status: str,
    start: str,
    end: str | None = None,
) -> None:
    input_ = {
        "patientId": gid("Patient", patient),
        "class": "AMB",
        "status": status,
        "periodStart": start,
        "periodEnd": end,
    }
    payload = await run(gql, hospital, RECORD_ENCOUNTER, input_)
    assert payload["userErrors"] == [], payload


async def visited(gql: GraphQL, hospital: Hospital, day: int) -> uuid.UUID:
    """A new patient with two finished encounters (45 and 30 minutes, on ``day`` and the day
    after) and one in progress, none processed yet."""
    patient = await new_patient(gql, hospital)
    await encounter(gql, hospital, patient, "FINISHED", at(day, 9), at(day, 9, 45))
    await encounter(gql, hospital, patient, "FINISHED", at(day + 1, 14), at(day + 1, 14, 30))
    await encounter(gql, hospital, patient, "IN_PROGRESS", at(day + 2, 8))
    return patient


async def post(
    http: httpx.AsyncClient,
    hospital: Hospital,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    roles: tuple[str, ...] = ("clinician",),
    subject: str = "visit-tester",
) -> dict[str, Any]:
    """The whole body, ``extensions.cost`` included."""
    bearer = issue(SECRET, subject=subject, hospital_id=hospital.id, roles=roles)
    response = await http.post(
        "/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {bearer}"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def summary_row(database_url: str, hospital: Hospital, patient: uuid.UUID) -> Any:
    (row,) = await rows(
        database_url,
        "SELECT * FROM patient_visit_summary WHERE hospital_id = $1 AND patient_id = $2",
        hospital.id,
        patient,
    )
    return row


def user() -> str:
    return f"visit-{uuid.uuid4().hex[:8]}"


async def events(database_url: str, subject: str) -> list[Any]:
    return await rows(
        database_url, "SELECT * FROM audit_event WHERE subject = $1 ORDER BY id", subject
    )


# --- what it says ---------------------------------------------------------------------------


async def test_null_until_processed_then_finished_encounters_only(
    gql: GraphQL, igql: GraphQL, app: Starlette, clinic: Hospital, services: Services
) -> None:
    patient = await visited(gql, clinic, 40)
    variables = {"id": gid("Patient", patient)}

    before = await gql(CHART, variables, hospital=clinic)
    assert before == {"data": {"patient": {"familyName": "Visit", "visitSummary": None}}}

    await process(services, clinic, patient)
    with recorded(app.state.database.primary) as statements:
        body = await gql(CHART, variables, hospital=clinic)
    assert "errors" not in body, body
    assert orjson.dumps(body) == orjson.dumps(await igql(CHART, variables, hospital=clinic))
    summary = dict(body["data"]["patient"]["visitSummary"])
    updated_at = summary.pop("updatedAt")
    assert summary == {
        "finishedEncounters": 2,
        "firstVisitAt": at(40, 9),
        "lastVisitAt": at(41, 14),
        "totalMinutes": 75,  # 45 + 30; the encounter in progress counts nothing
    }
    assert updated_at is not None
    # The compiler leaves the field to the interpreted path (INTERPRETED_ONLY): the patient
    # and its summary, no compiled statement.
    assert len(statements) == 2, statements
    assert not any("::text AS data" in s for s in statements)


async def test_the_summary_is_recomputed_not_incremented(
    gql: GraphQL, clinic: Hospital, services: Services, database_url: str
) -> None:
    patient = await visited(gql, clinic, 50)
    await process(services, clinic, patient)
    first = await summary_row(database_url, clinic, patient)
    await process(services, clinic, patient)  # delivered twice: the same row
    again = await summary_row(database_url, clinic, patient)
    assert {**dict(first), "updated_at": None} == {**dict(again), "updated_at": None}
    assert (again["finished_encounters"], again["total_minutes"]) == (2, 75)
    assert again["updated_at"] >= first["updated_at"]

    await encounter(gql, clinic, patient, "FINISHED", at(53, 10), at(53, 11))
    await process(services, clinic, patient)
    body = await gql(CHART, {"id": gid("Patient", patient)}, hospital=clinic)
    summary = body["data"]["patient"]["visitSummary"]
    assert (summary["finishedEncounters"], summary["totalMinutes"]) == (3, 135)
    assert (summary["firstVisitAt"], summary["lastVisitAt"]) == (at(50, 9), at(53, 10))


# --- who reads it ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("role", ["front_desk", "admin", "auditor", "service"])
async def test_roles_without_clinical_get_null_and_forbidden(
    path: str,
    role: str,
    client: httpx.AsyncClient,
    interpreted_client: httpx.AsyncClient,
    clinic: Hospital,
    summarised: uuid.UUID,
) -> None:
    patient = summarised
    query = f"query($id: ID!) {{ patient(id: $id) {{ id {SUMMARY} }} }}"
    http = over(path, client, interpreted_client)
    body = await post(http, clinic, query, {"id": gid("Patient", patient)}, roles=(role,))
    assert body["data"]["patient"] == {"id": gid("Patient", patient), "visitSummary": None}
    (error,) = body["errors"]
    assert error["path"] == ["patient", "visitSummary"]
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert "finishedEncounters" not in orjson.dumps(body["data"]).decode()


@pytest.mark.parametrize("path", PATHS)
async def test_a_confidential_record_shows_it_only_under_an_emergency_grant(
    path: str,
    gql: GraphQL,
    client: httpx.AsyncClient,
    interpreted_client: httpx.AsyncClient,
    clinic: Hospital,
    services: Services,
    database_url: str,
) -> None:
    patient = await visited(gql, clinic, 70)
    await process(services, clinic, patient)
    marked = await run(
        gql,
        clinic,
        MARK,
        {"id": gid("Patient", patient), "expectedVersion": 1, "confidential": True},
    )
    assert marked["userErrors"] == []
    http = over(path, client, interpreted_client)
    variables = {"id": gid("Patient", patient)}
    doctor = user()

    hidden = await post(http, clinic, CHART, variables, subject=doctor)
    assert hidden["data"]["patient"] == {"familyName": "Visit", "visitSummary": None}
    (error,) = hidden["errors"]
    assert error["path"] == ["patient", "visitSummary"]
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert "openEmergencyAccess" in error["message"]

    reason = "Unconscious, history of visits needed"
    opened = await post(
        client, clinic, BREAK, {"input": {"patientId": variables["id"], "reason": reason}},
        subject=doctor,
    )  # fmt: skip
    assert opened["data"]["openEmergencyAccess"]["userErrors"] == []
    shown = await post(http, clinic, CHART, variables, subject=doctor)
    assert "errors" not in shown, shown
    assert shown["data"]["patient"]["visitSummary"]["finishedEncounters"] == 2
    reads = [e for e in await events(database_url, doctor) if e["operation_name"] == "Chart"]
    assert [e["purpose"] for e in reads] == ["TREAT", "ETREAT"]


@pytest.mark.parametrize("path", PATHS)
async def test_reading_it_is_audited_as_clinical_for_the_patient(
    path: str,
    gql: GraphQL,
    client: httpx.AsyncClient,
    interpreted_client: httpx.AsyncClient,
    clinic: Hospital,
    services: Services,
    database_url: str,
) -> None:
    patient = await visited(gql, clinic, 80)
    await process(services, clinic, patient)
    subject = user()
    # No patient field but the summary: the read is still of this patient's data.
    query = f"query Visits($id: ID!) {{ patient(id: $id) {{ {SUMMARY} }} }}"
    http = over(path, client, interpreted_client)
    body = await post(http, clinic, query, {"id": gid("Patient", patient)}, subject=subject)
    assert body["data"]["patient"]["visitSummary"]["finishedEncounters"] == 2
    (event,) = await events(database_url, subject)
    assert list(event["patient_ids"]) == [patient]
    assert list(event["field_classes"]) == ["CLINICAL"]
    assert (event["operation_name"], event["purpose"], event["outcome"]) == (
        "Visits",
        "TREAT",
        "ok",
    )


# --- how it is read -------------------------------------------------------------------------


async def test_a_page_of_patients_reads_every_summary_in_one_statement(
    gql: GraphQL, app: Starlette, database_url: str, services: Services
) -> None:
    ward = await make_hospital(database_url)  # its own: the page holds exactly these patients
    patients = [await visited(gql, ward, 90 + 3 * i) for i in range(3)]
    for patient in patients[:2]:
        await process(services, ward, patient)
    query = (
        "{ patients(first: 10) { edges { node { id"
        " visitSummary { finishedEncounters totalMinutes } } } } }"
    )
    with recorded(app.state.database.primary) as statements:
        body = await gql(query, hospital=ward)
    assert "errors" not in body, body
    shown = {
        from_global_id(e["node"]["id"])[1]: e["node"]["visitSummary"]
        for e in body["data"]["patients"]["edges"]
    }
    summary = {"finishedEncounters": 2, "totalMinutes": 75}
    assert shown == {
        patients[0]: summary,
        patients[1]: summary,
        patients[2]: None,  # not processed yet
        ward.patients[0]: None,  # no encounter
        ward.patients[1]: None,
    }
    # The page, then one statement for all five patients' summaries.
    assert len(statements) == 2, statements
    assert sum("patient_visit_summary" in s for s in statements) == 1


async def test_it_costs_one_point_per_patient_like_a_to_one_relation(
    client: httpx.AsyncClient, clinic: Hospital
) -> None:
    async def cost(root: str, selection: str) -> int:
        query = f"{{ {root}(first: 10) {{ edges {{ node {{ id {selection} }} }} }} }}"
        body = await post(client, clinic, query)
        requested: int = body["extensions"]["cost"]["requestedQueryCost"]
        return requested

    # An object is 1, its scalars 0: ten patients' summaries are 10 more, as ten appointments'
    # patients are.
    assert await cost("patients", SUMMARY) == await cost("patients", "") + 10
    assert await cost("appointments", "patient { id }") == await cost("appointments", "") + 10


async def test_another_hospitals_summary_is_never_visible(
    gql: GraphQL, clinic: Hospital, services: Services, database_url: str
) -> None:
    other = await make_hospital(database_url)
    theirs = await visited(gql, other, 100)
    await process(services, other, theirs)
    assert (await summary_row(database_url, other, theirs))["finished_encounters"] == 2

    body = await gql(
        f"query($id: ID!) {{ node(id: $id) {{ ... on Patient {{ {SUMMARY} }} }} }}",
        {"id": gid("Patient", theirs)},
        hospital=clinic,
    )
    assert body == {"data": {"node": None}}
    # Below the API too: looked up by id in this hospital's transaction, their row is not found
    # (and in theirs it is, so the lookup itself works).
    for hospital, expected in ((clinic, []), (other, [theirs])):
        async with tenant(services, hospital.id, readonly=True) as db:
            found = await visits.by_patient_ids(db, [theirs])
        assert [row.patient_id for row in found] == expected
