"""Confidential records, break-the-glass and the national id (issue 10).

A national id is stored encrypted and bound to its patient; only its last four digits read,
and ``revealNationalId`` decrypts it with a reason that goes into the audit trail. A patient
marked confidential shows its clinical and sensitive fields (and its appointments' and
encounters') only to a clinician holding an open emergency grant, on both execution paths;
reads under a grant are audited with purpose ETREAT, and auditors review the grants.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from hms.resolvers.relay import from_global_id, to_global_id
from hms.security.tokens import issue
from tests import fixtures
from tests.api.writes import make_hospital, rows
from tests.conftest import SECRET

NATIONAL_ID = "123-45-6789"
HOURS = itertools.count(24, 2)  # one practitioner's bookings, never overlapping

REGISTER = """
mutation Register($input: CreatePatientInput!) {
  createPatient(input: $input) {
    patient { id nationalIdLast4 confidential } userErrors { field code message }
  }
}
"""
UPDATE = """
mutation Mark($input: UpdatePatientInput!) {
  updatePatient(input: $input) { patient { id version confidential } userErrors { field code } }
}
"""
REVEAL = """
mutation Reveal($input: RevealNationalIdInput!) {
  revealNationalId(input: $input) { nationalId userErrors { field code message } }
}
"""
BREAK = """
mutation Break($input: OpenEmergencyAccessInput!) {
  openEmergencyAccess(input: $input) {
    grant { id patientId userId reason openedAt expiresAt } userErrors { field code message }
  }
}
"""
CHART = """
query Chart($id: ID!) {
  patient(id: $id) {
    id mrn familyName confidential birthDate nationalIdLast4 phone
    appointments(first: 5) { edges { node { id confidential reason } } }
    encounters(first: 5) { edges { node { id confidential reason } } }
  }
}
"""
GRANTS = """
query Review($first: Int, $after: String) {
  emergencyGrants(first: $first, after: $after) {
    edges { cursor node { patientId userId reason } } pageInfo { hasNextPage endCursor }
  }
}
"""


@pytest.fixture(scope="module")
async def clinic(database_url: str, dataset: fixtures.Dataset) -> fixtures.HospitalData:
    return await make_hospital(database_url)


def user() -> str:
    return f"u-{uuid.uuid4().hex[:8]}"


async def post(
    http: httpx.AsyncClient,
    hospital: fixtures.HospitalData,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    roles: tuple[str, ...] = ("clinician",),
    subject: str = "doc",
) -> dict[str, Any]:
    bearer = issue(SECRET, subject=subject, hospital_id=hospital.id, roles=roles)
    response = await http.post(
        "/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {bearer}"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def register(http: httpx.AsyncClient, hospital: fixtures.HospitalData, **fields: Any) -> str:
    fields = {
        "mrn": f"C-{uuid.uuid4().hex[:8]}",
        "givenName": "Cora",
        "familyName": "Vale",
    } | fields
    body = await post(http, hospital, REGISTER, {"input": fields}, roles=("admin",))
    payload = body["data"]["createPatient"]
    assert payload["userErrors"] == [], payload
    pk: str = payload["patient"]["id"]
    return pk


async def events(database_url: str, subject: str) -> list[asyncpg.Record]:
    return await rows(
        database_url, "SELECT * FROM audit_event WHERE subject = $1 ORDER BY id", subject
    )


# --- the national id ---------------------------------------------------------------------


async def test_a_national_id_is_stored_encrypted_and_revealed_with_a_reason(
    client: httpx.AsyncClient, clinic: fixtures.HospitalData, database_url: str
) -> None:
    patient = await register(client, clinic, nationalId=NATIONAL_ID)
    pk = from_global_id(patient)[1]
    (row,) = await rows(
        database_url,
        "SELECT national_id_last4, national_id_enc FROM patient WHERE id = $1",
        pk,
    )
    assert row["national_id_last4"] == "6789"
    assert b"123456789" not in row["national_id_enc"]
    assert b"6789" not in row["national_id_enc"][1:]  # the digits are nowhere in clear

    subject = user()
    reason = "Insurance claim needs the full id"
    body = await post(
        client, clinic, REVEAL, {"input": {"patientId": patient, "reason": reason}},
        subject=subject,
    )  # fmt: skip
    assert body["data"]["revealNationalId"] == {"nationalId": "123456789", "userErrors": []}
    (event,) = await events(database_url, subject)
    assert event["operation_type"] == "mutation"
    assert list(event["patient_ids"]) == [pk]
    assert event["reason"] == reason
    assert event["field_classes"] == ["SENSITIVE"]
    assert event["purpose"] == "TREAT"
    assert "123456789" not in " ".join(str(v) for v in event.values())


async def test_reveal_refuses_bad_input_and_other_roles(
    client: httpx.AsyncClient,
    clinic: fixtures.HospitalData,
    dataset: fixtures.Dataset,
    database_url: str,
) -> None:
    patient = await register(client, clinic, nationalId="987654321")
    elsewhere = to_global_id("Patient", dataset.alpha.patients[0])
    subject = user()
    good, doc = "a good reason", ("clinician",)
    cases = [
        ({"patientId": patient, "reason": "why"}, doc, ["input", "reason"], "VALIDATION"),
        ({"patientId": elsewhere, "reason": good}, doc, ["input", "patientId"], "NOT_FOUND"),
        ({"patientId": "nonsense", "reason": good}, doc, ["input", "patientId"], "NOT_FOUND"),
        ({"patientId": patient, "reason": good}, ("front_desk",), None, "FORBIDDEN"),
        ({"patientId": patient, "reason": good}, ("auditor",), None, "FORBIDDEN"),
    ]
    # (An auditor may not read the payload's nationalId at all: it asks for the errors only.)
    errors_only = "mutation($input: RevealNationalIdInput!) { revealNationalId(input: $input)"
    errors_only += " { userErrors { field code } } }"
    for input_, roles, field, code in cases:
        body = await post(
            client, clinic, errors_only, {"input": input_}, roles=roles, subject=subject
        )
        payload = body["data"]["revealNationalId"]
        assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [(field, code)]
    assert await events(database_url, subject) == []  # nobody's data was read


async def test_a_patient_without_a_national_id_reveals_null(
    client: httpx.AsyncClient, clinic: fixtures.HospitalData
) -> None:
    patient = await register(client, clinic)
    body = await post(
        client, clinic, REVEAL, {"input": {"patientId": patient, "reason": "checking identity"}}
    )
    assert body["data"]["revealNationalId"] == {"nationalId": None, "userErrors": []}


async def test_a_ciphertext_moved_to_another_patient_does_not_decrypt(
    client: httpx.AsyncClient, clinic: fixtures.HospitalData, database_url: str
) -> None:
    source = await register(client, clinic, nationalId="111222333")
    target = await register(client, clinic, nationalId="444555666")
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE patient SET national_id_enc = (SELECT national_id_enc FROM patient"
            " WHERE id = $1) WHERE id = $2",
            from_global_id(source)[1],
            from_global_id(target)[1],
        )
    finally:
        await conn.close()
    body = await post(
        client, clinic, REVEAL, {"input": {"patientId": target, "reason": "checking identity"}}
    )
    payload = body["data"]["revealNationalId"]
    assert payload["nationalId"] is None
    assert [e["code"] for e in payload["userErrors"]] == ["UNAVAILABLE"]
    assert "111222333" not in str(body)


@pytest.mark.parametrize("value", ["12345", "12a456789", "1" * 21, "١٢٣٤٥٦٧"])
async def test_a_malformed_national_id_is_refused_and_nothing_is_written(
    client: httpx.AsyncClient, clinic: fixtures.HospitalData, database_url: str, value: str
) -> None:
    mrn = f"C-{uuid.uuid4().hex[:8]}"
    body = await post(
        client,
        clinic,
        REGISTER,
        {"input": {"mrn": mrn, "givenName": "N", "familyName": "Id", "nationalId": value}},
        roles=("admin",),
    )
    payload = body["data"]["createPatient"]
    assert payload["patient"] is None
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [
        (["input", "nationalId"], "VALIDATION")
    ]
    assert await rows(database_url, "SELECT 1 FROM patient WHERE mrn = $1", mrn) == []


async def test_a_national_id_can_be_replaced_and_cleared(
    client: httpx.AsyncClient, clinic: fixtures.HospitalData
) -> None:
    patient = await register(client, clinic, nationalId="100200300")
    reveal = {"input": {"patientId": patient, "reason": "checking identity"}}
    for version, value, shown in ((1, "900800700", "900800700"), (2, None, None)):
        body = await post(
            client,
            clinic,
            UPDATE,
            {"input": {"id": patient, "expectedVersion": version, "nationalId": value}},
        )
        assert body["data"]["updatePatient"]["userErrors"] == []
        revealed = await post(client, clinic, REVEAL, reveal)
        assert revealed["data"]["revealNationalId"]["nationalId"] == shown


async def test_without_a_key_national_ids_are_refused_not_stored_in_clear(
    settings: Any, clinic: fixtures.HospitalData, database_url: str
) -> None:
    from hms.app import create_app

    app = create_app(settings.with_(phi_keys=()))
    mrn = f"C-{uuid.uuid4().hex[:8]}"
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hms.test") as http:
            input_ = {"mrn": mrn, "givenName": "K", "familyName": "Ey", "nationalId": "123456"}
            body = await post(http, clinic, REGISTER, {"input": input_})
    (problem,) = body["data"]["createPatient"]["userErrors"]
    assert (problem["field"], problem["code"]) == (["input", "nationalId"], "VALIDATION")
    assert "HMS_PHI_KEY" in problem["message"]
    assert await rows(database_url, "SELECT 1 FROM patient WHERE mrn = $1", mrn) == []


# --- confidential records and break-the-glass ----------------------------------------------


async def confidential_patient(
    http: httpx.AsyncClient, hospital: fixtures.HospitalData, database_url: str
) -> str:
    """A patient with an appointment and an encounter, then marked confidential."""
    patient = await register(http, hospital, birthDate="1980-02-03", nationalId="555666777")
    pk = from_global_id(patient)[1]
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO appointment (hospital_id, id, patient_id, practitioner_id, status,"
            " start_at, end_at, reason) VALUES ($1, $2, $3, $4, 'booked',"
            " now() + make_interval(hours => $5), now() + make_interval(hours => $5 + 1),"
            " 'chest pain')",
            hospital.id,
            uuid.uuid4(),
            pk,
            hospital.practitioners[0],
            next(HOURS),
        )
    finally:
        await conn.close()
    body = await post(
        http, hospital, UPDATE,
        {"input": {"id": patient, "expectedVersion": 1, "confidential": True}},
        roles=("admin",),
    )  # fmt: skip
    assert body["data"]["updatePatient"]["userErrors"] == []
    conn = await asyncpg.connect(database_url)
    try:  # recorded after the mark: inherits it
        await conn.execute(
            "INSERT INTO encounter (hospital_id, id, patient_id, status, class, period_start,"
            " reason) VALUES ($1, $2, $3, 'finished', 'AMB', now(), 'follow-up')",
            hospital.id,
            uuid.uuid4(),
            pk,
        )
    finally:
        await conn.close()
    return patient


@pytest.mark.parametrize("path", ["compiled", "interpreted"])
async def test_a_confidential_record_hides_clinical_and_sensitive_fields_without_a_grant(
    path: str,
    client: httpx.AsyncClient,
    interpreted_client: httpx.AsyncClient,
    clinic: fixtures.HospitalData,
    database_url: str,
) -> None:
    http = client if path == "compiled" else interpreted_client
    patient = await confidential_patient(client, clinic, database_url)
    subject = user()
    body = await post(http, clinic, CHART, {"id": patient}, subject=subject)
    chart = body["data"]["patient"]
    assert chart["familyName"] == "Vale"  # who the patient is stays visible
    assert chart["phone"] is None  # (none on record; contact is not guarded by the label)
    assert (chart["confidential"], chart["birthDate"], chart["nationalIdLast4"]) == (
        True,
        None,
        None,
    )
    (appointment,) = [e["node"] for e in chart["appointments"]["edges"]]
    (encounter,) = [e["node"] for e in chart["encounters"]["edges"]]
    assert (appointment["confidential"], encounter["confidential"]) == (True, True)  # spread
    assert (appointment["reason"], encounter["reason"]) == (None, None)
    refused = {tuple(e["path"]) for e in body["errors"]}
    assert refused == {
        ("patient", "birthDate"),
        ("patient", "nationalIdLast4"),
        ("patient", "appointments", "edges", 0, "node", "reason"),
        ("patient", "encounters", "edges", 0, "node", "reason"),
    }
    assert {e["extensions"]["code"] for e in body["errors"]} == {"FORBIDDEN"}
    assert "openEmergencyAccess" in body["errors"][0]["message"]
    for secret in ("1980-02-03", "chest pain", "follow-up", "6777"):
        assert secret not in str(body)
    (event,) = await events(database_url, subject)
    assert event["purpose"] == "TREAT"
    assert event["outcome"] == "partial"


async def test_an_open_record_stays_on_the_compiled_path_beside_a_confidential_one(
    app: Any, client: httpx.AsyncClient, clinic: fixtures.HospitalData, database_url: str
) -> None:
    """Only a confidential record whose guarded fields are selected leaves the single
    statement; demographic reads of it, and guarded reads of open records, keep it."""
    from hms.persistence.database import OBSERVERS

    confidential = await confidential_patient(client, clinic, database_url)
    open_ = await register(client, clinic, birthDate="1990-01-01")
    seen: list[str] = []
    observers = OBSERVERS.setdefault(app.state.database.primary, [])
    observers.append(seen.append)
    try:
        for patient, query in (
            (confidential, "query($id: ID!) { patient(id: $id) { id familyName confidential } }"),
            (open_, "query($id: ID!) { patient(id: $id) { id birthDate } }"),
        ):
            seen.clear()
            body = await post(client, clinic, query, {"id": patient})
            assert "errors" not in body
            (statement,) = seen
            assert "::text AS data" in statement
    finally:
        observers.remove(seen.append)


@pytest.mark.parametrize("path", ["compiled", "interpreted"])
async def test_an_emergency_grant_opens_the_record_to_its_clinician_only(
    path: str,
    client: httpx.AsyncClient,
    interpreted_client: httpx.AsyncClient,
    clinic: fixtures.HospitalData,
    database_url: str,
) -> None:
    http = client if path == "compiled" else interpreted_client
    patient = await confidential_patient(client, clinic, database_url)
    doctor, colleague = user(), user()
    reason = "Unconscious in the emergency department"
    opened = await post(
        client, clinic, BREAK,
        {"input": {"patientId": patient, "reason": reason, "minutes": 30}},
        subject=doctor,
    )  # fmt: skip
    payload = opened["data"]["openEmergencyAccess"]
    assert payload["userErrors"] == []
    assert (payload["grant"]["patientId"], payload["grant"]["userId"]) == (patient, doctor)
    assert payload["grant"]["reason"] == reason

    body = await post(http, clinic, CHART, {"id": patient}, subject=doctor)
    assert "errors" not in body, body
    chart = body["data"]["patient"]
    assert (chart["birthDate"], chart["nationalIdLast4"]) == ("1980-02-03", "6777")
    assert chart["appointments"]["edges"][0]["node"]["reason"] == "chest pain"
    revealed = await post(
        client, clinic, REVEAL, {"input": {"patientId": patient, "reason": reason}},
        subject=doctor,
    )  # fmt: skip
    assert revealed["data"]["revealNationalId"]["nationalId"] == "555666777"

    grant_event, read_event, reveal_event = await events(database_url, doctor)
    assert (grant_event["operation_name"], grant_event["purpose"]) == ("Break", "ETREAT")
    assert grant_event["reason"] == reason
    assert (read_event["operation_name"], read_event["purpose"]) == ("Chart", "ETREAT")
    assert (reveal_event["purpose"], reveal_event["reason"]) == ("ETREAT", reason)

    # Another clinician's grant opens nothing for this one.
    other = await post(http, clinic, CHART, {"id": patient}, subject=colleague)
    assert other["data"]["patient"]["birthDate"] is None
    refused = await post(
        client, clinic, REVEAL, {"input": {"patientId": patient, "reason": "curious, sorry"}},
        subject=colleague,
    )  # fmt: skip
    assert [e["code"] for e in refused["data"]["revealNationalId"]["userErrors"]] == ["FORBIDDEN"]


async def test_an_expired_grant_opens_nothing(
    client: httpx.AsyncClient, clinic: fixtures.HospitalData, database_url: str
) -> None:
    patient = await confidential_patient(client, clinic, database_url)
    doctor = user()
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO emergency_grant (hospital_id, patient_id, subject, reason, opened_at,"
            " expires_at) VALUES ($1, $2, $3, 'an old emergency', now() - interval '2 hours',"
            " now() - interval '1 hour')",
            clinic.id,
            from_global_id(patient)[1],
            doctor,
        )
    finally:
        await conn.close()
    body = await post(client, clinic, CHART, {"id": patient}, subject=doctor)
    assert body["data"]["patient"]["birthDate"] is None


async def test_opening_a_grant_refuses_bad_input_and_other_roles(
    client: httpx.AsyncClient, clinic: fixtures.HospitalData, database_url: str
) -> None:
    confidential = await confidential_patient(client, clinic, database_url)
    open_ = await register(client, clinic)
    good = "Patient arrived by ambulance"
    doc, c = ("clinician",), confidential
    nobody = to_global_id("Patient", uuid.uuid4())
    cases = [
        ({"patientId": open_, "reason": good}, doc, ["input", "patientId"], "VALIDATION"),
        ({"patientId": c, "reason": "now"}, doc, ["input", "reason"], "VALIDATION"),
        ({"patientId": c, "reason": good, "minutes": 0}, doc, ["input", "minutes"], "VALIDATION"),
        ({"patientId": c, "reason": good, "minutes": 721}, doc, ["input", "minutes"], "VALIDATION"),
        ({"patientId": c, "reason": "x" * 501}, doc, ["input", "reason"], "VALIDATION"),
        ({"patientId": nobody, "reason": good}, doc, ["input", "patientId"], "NOT_FOUND"),
        ({"patientId": c, "reason": good}, ("admin",), None, "FORBIDDEN"),
        ({"patientId": c, "reason": good}, ("front_desk",), None, "FORBIDDEN"),
    ]
    subject = user()
    for input_, roles, field, code in cases:
        body = await post(client, clinic, BREAK, {"input": input_}, roles=roles, subject=subject)
        payload = body["data"]["openEmergencyAccess"]
        assert payload["grant"] is None, input_
        assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [(field, code)], input_
    assert (
        await rows(database_url, "SELECT 1 FROM emergency_grant WHERE subject = $1", subject) == []
    )


async def test_only_administrators_and_clinicians_set_the_mark(
    client: httpx.AsyncClient, clinic: fixtures.HospitalData, database_url: str
) -> None:
    patient = await register(client, clinic)
    body = await post(
        client, clinic, UPDATE,
        {"input": {"id": patient, "expectedVersion": 1, "confidential": True}},
        roles=("front_desk",),
    )  # fmt: skip
    assert body["data"]["updatePatient"]["userErrors"] == [
        {"field": ["input", "confidential"], "code": "FORBIDDEN"}
    ]
    created = await post(
        client, clinic, REGISTER,
        {"input": {"mrn": f"C-{uuid.uuid4().hex[:8]}", "givenName": "F", "familyName": "D",
                   "confidential": True}},
        roles=("front_desk",),
    )  # fmt: skip
    assert [e["code"] for e in created["data"]["createPatient"]["userErrors"]] == ["FORBIDDEN"]
    (row,) = await rows(
        database_url,
        "SELECT confidential, version FROM patient WHERE id = $1",
        from_global_id(patient)[1],
    )
    assert (row["confidential"], row["version"]) == (False, 1)


async def test_lifting_the_mark_reopens_the_record_and_its_children(
    client: httpx.AsyncClient, clinic: fixtures.HospitalData, database_url: str
) -> None:
    patient = await confidential_patient(client, clinic, database_url)
    body = await post(
        client, clinic, UPDATE,
        {"input": {"id": patient, "expectedVersion": 2, "confidential": False}},
    )  # fmt: skip
    assert body["data"]["updatePatient"]["userErrors"] == []
    chart = await post(client, clinic, CHART, {"id": patient})
    assert "errors" not in chart
    assert chart["data"]["patient"]["encounters"]["edges"][0]["node"]["reason"] == "follow-up"


async def test_grants_are_append_only_and_reviewed_by_auditors(
    client: httpx.AsyncClient, clinic: fixtures.HospitalData, database_url: str
) -> None:
    patient = await confidential_patient(client, clinic, database_url)
    doctor = user()
    for n in range(3):
        body = await post(
            client, clinic, BREAK,
            {"input": {"patientId": patient, "reason": f"emergency number {n}"}},
            subject=doctor,
        )  # fmt: skip
        assert body["data"]["openEmergencyAccess"]["userErrors"] == []
    seen: list[str] = []
    after = None
    while True:
        page = await post(client, clinic, GRANTS, {"first": 2, "after": after}, roles=("auditor",))
        review = page["data"]["emergencyGrants"]
        seen += [e["node"]["reason"] for e in review["edges"] if e["node"]["userId"] == doctor]
        if not review["pageInfo"]["hasNextPage"]:
            break
        after = review["pageInfo"]["endCursor"]
    assert seen == ["emergency number 2", "emergency number 1", "emergency number 0"]

    refused = await post(client, clinic, GRANTS, roles=("clinician",))
    assert refused["data"] == {"emergencyGrants": None}
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"

    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SET ROLE hms_app")
        await conn.execute("SELECT set_config('app.hospital_id', $1, false)", str(clinic.id))
        for statement in (
            "UPDATE emergency_grant SET expires_at = now() + interval '1 day'",
            "DELETE FROM emergency_grant",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
        await conn.execute("RESET ROLE")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("DELETE FROM emergency_grant")  # the owner too
    finally:
        await conn.close()
