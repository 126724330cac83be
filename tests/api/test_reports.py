"""Reports end to end: ``requestReport`` queues a report and its job in one transaction, the job
(run here directly, no worker) writes the CSV, ``report(id)`` shows where it is, and
``GET /reports/{id}.csv`` serves it to the roles that may, audited patient by patient.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from hms.http import reports as report_http
from hms.jobs import reports as report_job
from hms.jobs.base import JobInput, Services
from hms.models.ids import uuid7
from hms.persistence import reports as report_rows
from hms.persistence.database import Database, side_engine
from hms.resolvers.relay import expect_global_id
from hms.security import policy
from hms.settings import Settings
from tests import fixtures
from tests.api.writes import USER_ERRORS, gid, mutation, rows
from tests.conftest import token

Hospital = fixtures.HospitalData

FROM = dt.datetime(2027, 6, 1, tzinfo=dt.UTC)
TO = FROM + dt.timedelta(days=7)

REPORT = "id kind from to status requestedAt finishedAt rowCount error downloadUrl"
REQUEST = mutation("requestReport", "RequestReportInput", f"report {{ {REPORT} }} {USER_ERRORS}")
READ = f"query($id: ID!) {{ report(id: $id) {{ {REPORT} }} }}"
NODE = "query($id: ID!) { node(id: $id) { id ... on Report { status rowCount } } }"


@dataclasses.dataclass
class Schedule:
    """What the ward holds around the report's range, inserted as the owner."""

    hospital: Hospital
    #: A patient whose family name a spreadsheet would run as a formula.
    formula_patient: uuid.UUID


@pytest.fixture(scope="module")
async def schedule(ward: Hospital, database_url: str) -> Schedule:
    formula_patient = uuid7()
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO patient (hospital_id, id, mrn, given_name, family_name)"
            " VALUES ($1, $2, 'W-F', 'Eve', '=HYPERLINK(\"http://x\")')",
            ward.id,
            formula_patient,
        )
        patients = [*ward.patients, formula_patient]
        # (practitioner, patient, start, status): two start at the same instant (the keyset
        # order breaks the tie by id), one exactly at FROM (in), one just before it and one
        # exactly at TO (both out).
        appointments = [
            (0, 0, FROM, "booked"),
            (1, 1, FROM + dt.timedelta(days=1, hours=9), "fulfilled"),
            (2, 2, FROM + dt.timedelta(days=1, hours=9), "cancelled"),
            (3, 0, FROM + dt.timedelta(days=2, hours=10), "booked"),
            (4, 1, FROM + dt.timedelta(days=6, hours=23), "noshow"),
            (0, 1, FROM - dt.timedelta(minutes=30), "fulfilled"),
            (1, 0, TO, "booked"),
        ]
        for practitioner, patient, start, status in appointments:
            await conn.execute(
                "INSERT INTO appointment (hospital_id, id, patient_id, practitioner_id, status,"
                " start_at, end_at, reason) VALUES ($1, $2, $3, $4, $5, $6, $7, 'private')",
                ward.id,
                uuid7(),
                patients[patient],
                ward.practitioners[practitioner],
                status,
                start,
                start + dt.timedelta(minutes=20),
            )
        encounters: list[tuple[int | None, int, dt.datetime, str, dt.timedelta | None]] = [
            (0, 0, FROM + dt.timedelta(hours=1), "AMB", dt.timedelta(hours=1)),
            (None, 2, FROM + dt.timedelta(days=3), "EMER", None),
            (5, 1, FROM + dt.timedelta(days=8), "IMP", dt.timedelta(days=2)),
        ]
        for doctor, patient, start, class_, length in encounters:
            await conn.execute(
                "INSERT INTO encounter (hospital_id, id, patient_id, practitioner_id, status,"
                " class, period_start, period_end, reason)"
                " VALUES ($1, $2, $3, $4, 'finished', $5, $6, $7, 'private')",
                ward.id,
                uuid7(),
                patients[patient],
                None if doctor is None else ward.practitioners[doctor],
                class_,
                start,
                None if length is None else start + length,
            )
    finally:
        await conn.close()
    return Schedule(ward, formula_patient)


@pytest.fixture(scope="module")
async def services(settings: Settings) -> AsyncIterator[Services]:
    """What ``hms worker`` hands its jobs, against the test database."""
    assert settings.database_url is not None
    database = Database.from_settings(settings)
    owner = side_engine(settings.database_url, "hms-test-jobs")
    async with httpx.AsyncClient() as http:
        yield Services(settings, database, owner, http)
    await owner.dispose()
    await database.dispose()


def bearer(hospital: Hospital, *roles: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(hospital, *roles)}"}


async def graphql(
    client: httpx.AsyncClient,
    hospital: Hospital,
    query: str,
    variables: dict[str, Any],
    *roles: str,
) -> dict[str, Any]:
    response = await client.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers=bearer(hospital, *roles),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def asking(kind: str = "APPOINTMENTS", start: dt.datetime = FROM, end: dt.datetime = TO) -> Any:
    return {"input": {"kind": kind, "from": start.isoformat(), "to": end.isoformat()}}


async def request(
    client: httpx.AsyncClient, hospital: Hospital, kind: str = "APPOINTMENTS", *roles: str
) -> dict[str, Any]:
    body = await graphql(client, hospital, REQUEST, asking(kind), *roles)
    assert "errors" not in body, body
    payload: dict[str, Any] = body["data"]["requestReport"]
    assert payload["userErrors"] == [], payload
    report: dict[str, Any] = payload["report"]
    return report


def pk(report: dict[str, Any]) -> uuid.UUID:
    return expect_global_id(report["id"], "Report")


async def job_of(database_url: str, report_id: uuid.UUID) -> asyncpg.Record:
    (job,) = await rows(
        database_url,
        "SELECT id, entrypoint, priority, status, payload, attempts FROM pgqueuer"
        " WHERE dedupe_key = $1",
        report_rows.job_key(report_id),
    )
    return job


async def job_input(database_url: str, report: dict[str, Any]) -> JobInput:
    """The job exactly as the worker would see it."""
    job = await job_of(database_url, pk(report))
    return JobInput.parse(job["id"], job["entrypoint"], job["payload"], job["attempts"])


async def stored(database_url: str, report: dict[str, Any]) -> asyncpg.Record:
    (row,) = await rows(database_url, "SELECT * FROM report WHERE id = $1", pk(report))
    return row


async def left_behind(database_url: str, hospital: Hospital) -> tuple[int, int]:
    """Reports and report jobs of ``hospital``."""
    (row,) = await rows(
        database_url,
        "SELECT (SELECT count(*) FROM report WHERE hospital_id = $1) AS reports,"
        " (SELECT count(*) FROM pgqueuer WHERE entrypoint = 'reports'"
        "  AND convert_from(payload, 'UTF8')::jsonb ->> 'hospital' = $1::text) AS jobs",
        hospital.id,
    )
    return int(row["reports"]), int(row["jobs"])


def parsed(content: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(content.decode())))


async def test_a_request_queues_the_report_and_its_job_together(
    client: httpx.AsyncClient, ward: Hospital, database_url: str
) -> None:
    report = await request(client, ward)
    assert report["kind"] == "APPOINTMENTS"
    assert report["from"] == FROM.isoformat()
    assert report["to"] == TO.isoformat()
    assert report["status"] == "QUEUED"
    assert report["finishedAt"] is report["rowCount"] is report["downloadUrl"] is None
    row = await stored(database_url, report)
    assert (row["hospital_id"], row["status"], row["requested_by"]) == (ward.id, "queued", "tester")
    job = await job_of(database_url, pk(report))
    assert (job["entrypoint"], job["priority"], job["status"]) == ("reports", 10, "queued")
    assert orjson.loads(job["payload"]) == {"hospital": str(ward.id), "report": str(pk(report))}


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (FROM, FROM, "later than"),
        (TO, FROM, "later than"),
        (FROM, FROM + dt.timedelta(days=366, seconds=1), "366 days"),
    ],
)
async def test_a_bad_range_is_refused_and_leaves_nothing(
    client: httpx.AsyncClient,
    ward: Hospital,
    database_url: str,
    start: dt.datetime,
    end: dt.datetime,
    message: str,
) -> None:
    before = await left_behind(database_url, ward)
    body = await graphql(client, ward, REQUEST, asking("APPOINTMENTS", start, end))
    payload = body["data"]["requestReport"]
    assert payload["report"] is None
    (error,) = payload["userErrors"]
    assert (error["field"], error["code"]) == (["input", "to"], "VALIDATION")
    assert message in error["message"]
    assert await left_behind(database_url, ward) == before


async def test_366_days_is_the_longest_range(client: httpx.AsyncClient, ward: Hospital) -> None:
    longest = asking("ENCOUNTERS", FROM, FROM + dt.timedelta(days=366))
    body = await graphql(client, ward, REQUEST, longest)
    assert body["data"]["requestReport"]["userErrors"] == []


async def test_a_rolled_back_request_enqueues_nothing(
    client: httpx.AsyncClient, ward: Hospital, database_url: str
) -> None:
    before = await left_behind(database_url, ward)
    document = """mutation($input: RequestReportInput!) {
      a: requestReport(input: $input) { report { id } }
      b: createPatient(input: {mrn: "REP-RB", givenName: "Ro", familyName: "Back"}) {
        patient { encounters(first: -1) { totalCount } }
      }
    }"""
    body = await graphql(client, ward, document, asking())
    assert body["data"] is None
    assert body["extensions"]["rolledBack"] is True
    assert await left_behind(database_url, ward) == before


@pytest.mark.parametrize("role", ["front_desk", "auditor", "service"])
async def test_roles_that_may_not_report_get_nothing(
    role: str, client: httpx.AsyncClient, ward: Hospital, database_url: str
) -> None:
    before = await left_behind(database_url, ward)
    body = await graphql(client, ward, REQUEST, asking(), role)
    payload = body["data"]["requestReport"]
    assert payload["report"] is None
    assert [e["code"] for e in payload["userErrors"]] == ["FORBIDDEN"]
    assert await left_behind(database_url, ward) == before

    existing = await request(client, ward)
    read = await graphql(client, ward, READ, {"id": existing["id"]}, role)
    assert read["data"] == {"report": None}
    assert read["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    node = await graphql(client, ward, NODE, {"id": existing["id"]}, role)
    assert node["data"] == {"node": None}
    assert "errors" not in node
    response = await client.get(f"/reports/{existing['id']}.csv", headers=bearer(ward, role))
    assert response.status_code == 403
    assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"


def test_every_role_that_reports_reads_what_a_report_holds() -> None:
    for role in policy.REPORTERS:
        assert policy.FieldClass.DEMOGRAPHIC in policy.READS[role]


async def in_range(database_url: str, hospital: Hospital, table: str, column: str) -> list[Any]:
    """The ids of ``table``'s rows starting in [FROM, TO), counted around the API."""
    found = await rows(
        database_url,
        f"SELECT id FROM {table} WHERE hospital_id = $1 AND {column} >= $2 AND {column} < $3",
        hospital.id,
        FROM,
        TO,
    )
    return [row["id"] for row in found]


async def test_the_job_writes_the_appointments_in_range(
    client: httpx.AsyncClient,
    schedule: Schedule,
    services: Services,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ward = schedule.hospital
    monkeypatch.setattr(report_rows, "PAGE_SIZE", 2)  # keyset pages, one of them across a tie
    report = await request(client, ward)
    await report_job.run(services, await job_input(database_url, report))

    body = await graphql(client, ward, READ, {"id": report["id"]})
    done = body["data"]["report"]
    expected = await in_range(database_url, ward, "appointment", "start_at")
    assert len(expected) == 5
    assert done["status"] == "READY"
    assert done["rowCount"] == len(expected)
    assert done["finishedAt"] is not None
    assert done["error"] is None
    assert done["downloadUrl"] == f"/reports/{report['id']}.csv"

    header, *lines = parsed((await stored(database_url, report))["content"])
    assert header == [
        "id",
        "patientId",
        "mrn",
        "familyName",
        "givenName",
        "practitioner",
        "status",
        "startAt",
        "endAt",
    ]
    assert sorted(line[0] for line in lines) == sorted(gid("Appointment", i) for i in expected)
    assert [line[7] for line in lines] == sorted(line[7] for line in lines)  # in time order
    first = lines[0]
    assert first[1:] == [
        gid("Patient", ward.patients[0]),
        "W0",
        "Ward",
        "Pat",
        "Doc Ward0",
        "BOOKED",
        FROM.isoformat(),
        (FROM + dt.timedelta(minutes=20)).isoformat(),
    ]
    formula = next(line for line in lines if line[1] == gid("Patient", schedule.formula_patient))
    assert formula[3] == '\'=HYPERLINK("http://x")'  # shown as text, never run
    assert "private" not in (await stored(database_url, report))["content"].decode()


async def test_the_job_writes_the_encounters_in_range(
    client: httpx.AsyncClient, schedule: Schedule, services: Services, database_url: str
) -> None:
    ward = schedule.hospital
    report = await request(client, ward, "ENCOUNTERS")
    await report_job.run(services, await job_input(database_url, report))
    row = await stored(database_url, report)
    expected = await in_range(database_url, ward, "encounter", "period_start")
    assert row["status"] == "ready"
    assert row["row_count"] == len(expected) == 2
    header, *lines = parsed(row["content"])
    assert header[5:] == ["practitioner", "class", "status", "periodStart", "periodEnd"]
    assert [line[0] for line in lines] == [gid("Encounter", i) for i in sorted(expected)]
    assert lines[0][5:] == [
        "Doc Ward0",
        "AMB",
        "FINISHED",
        (FROM + dt.timedelta(hours=1)).isoformat(),
        (FROM + dt.timedelta(hours=2)).isoformat(),
    ]
    assert lines[1][5:] == ["", "EMER", "FINISHED", (FROM + dt.timedelta(days=3)).isoformat(), ""]


async def ready_report(
    client: httpx.AsyncClient, hospital: Hospital, services: Services, database_url: str
) -> dict[str, Any]:
    report = await request(client, hospital)
    await report_job.run(services, await job_input(database_url, report))
    body = await graphql(client, hospital, READ, {"id": report["id"]})
    done: dict[str, Any] = body["data"]["report"]
    assert done["status"] == "READY"
    return done


async def test_running_the_job_again_changes_nothing(
    client: httpx.AsyncClient, schedule: Schedule, services: Services, database_url: str
) -> None:
    report = await ready_report(client, schedule.hospital, services, database_url)
    before = await stored(database_url, report)
    await report_job.run(services, await job_input(database_url, report))
    after = await stored(database_url, report)
    assert before["content"]
    assert after["content"] == before["content"]
    assert (after["status"], after["row_count"], after["finished_at"]) == (
        "ready",
        before["row_count"],
        before["finished_at"],
    )


async def test_a_job_that_failed_for_good_marks_its_report_failed(
    client: httpx.AsyncClient, schedule: Schedule, services: Services, database_url: str
) -> None:
    ward = schedule.hospital
    report = await request(client, ward)
    job = await job_input(database_url, report)
    await report_job.failed(services, job, "JobTimeout")
    body = await graphql(client, ward, READ, {"id": report["id"]})
    failed = body["data"]["report"]
    assert (failed["status"], failed["error"], failed["downloadUrl"]) == (
        "FAILED",
        "JobTimeout",
        None,
    )
    assert failed["finishedAt"] is not None
    response = await client.get(f"/reports/{report['id']}.csv", headers=bearer(ward))
    assert response.status_code == 404

    # A dead job retried by hand (hms jobs retry) writes the report after all.
    await report_job.run(services, job)
    row = await stored(database_url, report)
    assert (row["status"], row["error"]) == ("ready", None)
    assert row["row_count"] == 5


async def test_a_ready_report_stays_ready_when_a_late_failure_arrives(
    client: httpx.AsyncClient, schedule: Schedule, services: Services, database_url: str
) -> None:
    report = await ready_report(client, schedule.hospital, services, database_url)
    await report_job.failed(services, await job_input(database_url, report), "JobTimeout")
    row = await stored(database_url, report)
    assert (row["status"], row["error"]) == ("ready", None)


async def test_a_job_for_a_report_that_is_not_there_does_nothing(
    services: Services, ward: Hospital, database_url: str
) -> None:
    before = await left_behind(database_url, ward)
    await report_job.run(services, JobInput(0, "reports", ward.id, {"report": str(uuid7())}, 0))
    assert await left_behind(database_url, ward) == before


async def test_download_answers_the_csv_and_audits_every_patient(
    client: httpx.AsyncClient,
    schedule: Schedule,
    services: Services,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ward = schedule.hospital
    report = await ready_report(client, ward, services, database_url)
    monkeypatch.setattr(report_http, "PATIENTS_PER_EVENT", 2)
    response = await client.get(report["downloadUrl"], headers=bearer(ward, "admin"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-disposition"] == (
        'attachment; filename="appointments-20270601-20270608.csv"'
    )
    assert response.content == (await stored(database_url, report))["content"]

    trace_id = response.headers["traceresponse"].split("-")[1]
    events = await rows(
        database_url,
        "SELECT subject, roles, operation_type, operation_name, patient_ids, field_classes,"
        " outcome FROM audit_event WHERE hospital_id = $1 AND trace_id = $2 ORDER BY id",
        ward.id,
        trace_id,
    )
    (in_report,) = await rows(
        database_url,
        "SELECT array_agg(DISTINCT patient_id) AS ids FROM appointment"
        " WHERE hospital_id = $1 AND start_at >= $2 AND start_at < $3",
        ward.id,
        FROM,
        TO,
    )
    assert len(in_report["ids"]) == 3
    assert [len(event["patient_ids"]) for event in events] == [2, 1]
    assert {p for event in events for p in event["patient_ids"]} == set(in_report["ids"])
    for event in events:
        assert (event["subject"], event["roles"], event["operation_type"]) == (
            "tester",
            ["admin"],
            "query",
        )
        assert (event["operation_name"], event["field_classes"], event["outcome"]) == (
            "downloadReport",
            ["DEMOGRAPHIC"],
            "ok",
        )
    # The job stored the patients with the CSV: the download read no CSV to find them.
    assert set((await stored(database_url, report))["patient_ids"]) == set(in_report["ids"])


async def test_a_report_written_before_its_patients_were_stored_is_audited_from_its_csv(
    client: httpx.AsyncClient,
    schedule: Schedule,
    services: Services,
    database_url: str,
) -> None:
    """Reports made before migration 0011 have no stored patients (NULL): their downloads are
    audited with the patients read from the CSV."""
    ward = schedule.hospital
    report = await ready_report(client, ward, services, database_url)
    expected = set((await stored(database_url, report))["patient_ids"])
    await rows(database_url, "UPDATE report SET patient_ids = NULL WHERE id = $1", pk(report))
    response = await client.get(report["downloadUrl"], headers=bearer(ward, "admin"))
    assert response.status_code == 200, response.text
    trace_id = response.headers["traceresponse"].split("-")[1]
    events = await rows(
        database_url,
        "SELECT patient_ids FROM audit_event WHERE hospital_id = $1 AND trace_id = $2",
        ward.id,
        trace_id,
    )
    assert expected
    assert {p for event in events for p in event["patient_ids"]} == expected


async def test_another_hospital_sees_no_report(
    client: httpx.AsyncClient,
    schedule: Schedule,
    services: Services,
    dataset: fixtures.Dataset,
    database_url: str,
) -> None:
    report = await ready_report(client, schedule.hospital, services, database_url)
    other = dataset.alpha
    read = await graphql(client, other, READ, {"id": report["id"]})
    assert read["data"] == {"report": None}
    assert "errors" not in read
    node = await graphql(client, other, NODE, {"id": report["id"]})
    assert node["data"] == {"node": None}
    response = await client.get(report["downloadUrl"], headers=bearer(other))
    assert response.status_code == 404
    assert response.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    events = await rows(
        database_url,
        "SELECT count(*) AS n FROM audit_event WHERE operation_name = 'downloadReport'"
        " AND hospital_id = $1",
        other.id,
    )
    assert events[0]["n"] == 0


@pytest.mark.parametrize(
    "path",
    [
        "/reports/not-an-id.csv",
        f"/reports/{gid('Patient', uuid7())}.csv",
        f"/reports/{gid('Report', uuid7())}.csv",
    ],
)
async def test_ids_that_name_no_report_are_not_found(
    path: str, client: httpx.AsyncClient, ward: Hospital
) -> None:
    response = await client.get(path, headers=bearer(ward))
    assert response.status_code == 404


async def test_a_report_not_ready_yet_is_not_found(
    client: httpx.AsyncClient, ward: Hospital
) -> None:
    report = await request(client, ward)
    response = await client.get(f"/reports/{report['id']}.csv", headers=bearer(ward))
    assert response.status_code == 404


async def test_a_bad_token_is_refused_as_graphql_refuses_it(
    client: httpx.AsyncClient, ward: Hospital
) -> None:
    path = f"/reports/{gid('Report', uuid7())}.csv"
    response = await client.get(path, headers={"Authorization": "Bearer nonsense"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize("execution", ["compiled", "interpreted"])
async def test_node_finds_a_report_on_both_paths(
    execution: str,
    client: httpx.AsyncClient,
    interpreted_client: httpx.AsyncClient,
    schedule: Schedule,
    services: Services,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ward = schedule.hospital
    report = await ready_report(client, ward, services, database_url)
    http = client if execution == "compiled" else interpreted_client
    patient = {"id": gid("Patient", ward.patients[0])}
    for variables in ({"id": report["id"]}, patient, {"id": report["id"]}):
        body = await graphql(http, ward, NODE, variables)
        assert "errors" not in body, body
        assert body["data"]["node"]["id"] == variables["id"]
    assert body["data"]["node"] == {
        "id": report["id"],
        "status": "READY",
        "rowCount": report["rowCount"],
    }
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
