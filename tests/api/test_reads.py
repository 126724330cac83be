"""Every read of DESIGN §5 against the fixture dataset, including tenant isolation."""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.applications import Starlette

from hms.resolvers.relay import to_global_id
from tests import fixtures
from tests.conftest import NOW, GraphQL
from tests.statements import recorded


def ids(body: dict[str, Any], field: str) -> list[str]:
    return [edge["node"]["id"] for edge in body["data"][field]["edges"]]


async def test_viewer_names_the_caller_and_hospital(
    gql: GraphQL, dataset: fixtures.Dataset
) -> None:
    body = await gql("{ viewer { userId roles hospital { id slug name } } }", hospital=dataset.beta)
    assert body["data"]["viewer"] == {
        "userId": "tester",
        "roles": ["clinician"],
        "hospital": {
            "id": to_global_id("Hospital", dataset.beta.id),
            "slug": "beta",
            "name": "Beta",
        },
    }


async def test_patient_by_id_and_mrn(gql: GraphQL, dataset: fixtures.Dataset) -> None:
    gid = to_global_id("Patient", dataset.alpha.patients[3])
    body = await gql(
        "query($id: ID!) { patient(id: $id) { id mrn givenName familyName birthDate gender active"
        ' version createdAt } patientByMrn(mrn: "A00003") { id } }',
        {"id": gid},
    )
    patient = body["data"]["patient"]
    assert patient["id"] == gid
    assert patient["mrn"] == "A00003"
    assert patient["familyName"] == fixtures.FAMILY[3]
    assert patient["birthDate"] == "1953-04-04"
    assert patient["gender"] == "UNKNOWN"
    assert patient["version"] == 1
    assert patient["createdAt"].endswith("+00:00")
    assert body["data"]["patientByMrn"] == {"id": gid}


async def test_other_hospitals_rows_are_invisible(gql: GraphQL, dataset: fixtures.Dataset) -> None:
    """A beta id asked for by an alpha caller is null everywhere, exactly like a missing id."""
    foreign = to_global_id("Patient", dataset.beta.patients[0])
    body = await gql(
        "query($id: ID!) { node(id: $id) { id } patient(id: $id) { id }"
        ' nodes(ids: [$id]) { id } patientByMrn(mrn: "B00000") { id } }',
        {"id": foreign},
    )
    assert body == {"data": {"node": None, "patient": None, "nodes": [None], "patientByMrn": None}}
    listed = await gql('{ patients(first: 100, filter: {namePrefix: ""}) { totalCount } }')
    assert listed["data"]["patients"]["totalCount"] == 120
    beta = await gql(
        "{ patients(first: 100) { totalCount edges { node { mrn } } } }", hospital=dataset.beta
    )
    assert beta["data"]["patients"]["totalCount"] == 12
    assert all(e["node"]["mrn"].startswith("B") for e in beta["data"]["patients"]["edges"])


async def test_foreign_ids_in_filters_match_nothing(
    gql: GraphQL, dataset: fixtures.Dataset
) -> None:
    foreign = to_global_id("Practitioner", dataset.beta.practitioners[0])
    body = await gql(
        "query($p: ID!) { appointments(first: 5, filter: {practitionerId: $p}) { totalCount } }",
        {"p": foreign},
    )
    assert body["data"]["appointments"]["totalCount"] == 0


async def test_node_and_nodes_resolve_every_type(gql: GraphQL, dataset: fixtures.Dataset) -> None:
    patient = dataset.alpha.patients[1]
    wanted = [
        to_global_id("Patient", patient),
        to_global_id("Practitioner", dataset.alpha.practitioners[0]),
        to_global_id("Appointment", dataset.alpha.appointments[patient][0]),
        to_global_id("Encounter", dataset.alpha.encounters[patient][0]),
        to_global_id("Hospital", dataset.alpha.id),
        to_global_id("Patient", dataset.beta.patients[0]),
    ]
    body = await gql("query($ids: [ID!]!) { nodes(ids: $ids) { __typename id } }", {"ids": wanted})
    nodes = body["data"]["nodes"]
    assert [n and n["__typename"] for n in nodes] == [
        "Patient",
        "Practitioner",
        "Appointment",
        "Encounter",
        "Hospital",
        None,
    ]
    assert [n and n["id"] for n in nodes[:5]] == wanted[:5]


async def test_nodes_batch_one_statement_per_type(
    igql: GraphQL, interpreted_app: Starlette, dataset: fixtures.Dataset
) -> None:
    wanted = [to_global_id("Patient", pk) for pk in dataset.alpha.patients[:10]]
    wanted += [to_global_id("Practitioner", pk) for pk in dataset.alpha.practitioners]
    with recorded(interpreted_app.state.database.primary) as statements:
        body = await igql("query($ids: [ID!]!) { nodes(ids: $ids) { id } }", {"ids": wanted})
    assert [n["id"] for n in body["data"]["nodes"]] == wanted
    assert len(statements) == 2  # one for the ten patients, one for the three practitioners


async def test_wrong_type_id_is_an_error(gql: GraphQL, dataset: fixtures.Dataset) -> None:
    body = await gql(
        "query($id: ID!) { patient(id: $id) { id } }",
        {"id": to_global_id("Practitioner", dataset.alpha.practitioners[0])},
    )
    assert body["data"]["patient"] is None
    assert "expected a Patient id" in body["errors"][0]["message"]


async def test_nested_relations(gql: GraphQL, dataset: fixtures.Dataset) -> None:
    patient = dataset.alpha.patients[2]  # index 2: 3 appointments, 3 encounters
    body = await gql(
        "query($id: ID!) { patient(id: $id) { appointments(first: 10) { totalCount edges { node {"
        " id status startAt endAt reason patient { id } practitioner { id familyName } } } }"
        " encounters(first: 10) { totalCount edges { node { class status periodStart periodEnd"
        " patient { id } practitioner { id } appointment { id } } } } } }",
        {"id": to_global_id("Patient", patient)},
    )
    data = body["data"]["patient"]
    appointments = [e["node"] for e in data["appointments"]["edges"]]
    assert data["appointments"]["totalCount"] == 3
    starts = [a["startAt"] for a in appointments]
    assert starts == sorted(starts, reverse=True)  # a patient's history reads newest first
    assert {a["patient"]["id"] for a in appointments} == {to_global_id("Patient", patient)}
    assert data["encounters"]["totalCount"] == 3
    practitioners = [e["node"]["practitioner"] for e in data["encounters"]["edges"]]
    assert practitioners.count(None) == 2  # encounters 0 and 2 have no practitioner


async def test_practitioner_schedule_is_in_time_order(
    gql: GraphQL, dataset: fixtures.Dataset
) -> None:
    body = await gql(
        "{ practitioners(first: 10) { totalCount edges { node { familyName active"
        " appointments(first: 4) { totalCount edges { node { startAt } } } } } } }"
    )
    practitioners = [e["node"] for e in body["data"]["practitioners"]["edges"]]
    assert [p["familyName"] for p in practitioners] == ["Doctor0", "Doctor1", "Doctor2"]
    for practitioner in practitioners:
        starts = [e["node"]["startAt"] for e in practitioner["appointments"]["edges"]]
        assert starts == sorted(starts)
        assert len(starts) == 4
    total = sum(p["appointments"]["totalCount"] for p in practitioners)
    assert total == sum(len(a) for a in dataset.alpha.appointments.values())


async def test_patient_filters(gql: GraphQL, dataset: fixtures.Dataset) -> None:
    async def count(filter_: str) -> int:
        body = await gql(f"{{ patients(filter: {filter_}) {{ totalCount }} }}")
        return int(body["data"]["patients"]["totalCount"])

    assert await count("{active: true}") == dataset.alpha.active
    assert await count("{active: false}") == 120 - dataset.alpha.active
    assert await count('{namePrefix: "ad"}') == 12  # Adams: every 10th patient
    assert await count('{namePrefix: "ana"}') == 20  # given name Ana: every 6th
    assert await count('{namePrefix: "%"}') == 0  # wildcards are literal
    assert await count("{gender: MALE}") == 30
    body = await gql(
        "query($from: DateTime!) { patients(filter: {createdFrom: $from}) { totalCount } }",
        {"from": (NOW - dt.timedelta(days=30)).isoformat()},
    )
    assert body["data"]["patients"]["totalCount"] == dataset.alpha.new_last_30_days


async def test_patient_order_by(gql: GraphQL) -> None:
    body = await gql(
        "{ byName: patients(first: 100) { edges { node { familyName givenName } } }"
        "  newest: patients(first: 5, orderBy: {field: CREATED_AT, direction: DESC}) {"
        "   edges { node { mrn } } } }"
    )
    names = [
        (e["node"]["familyName"], e["node"]["givenName"]) for e in body["data"]["byName"]["edges"]
    ]
    assert names == sorted(names)
    assert [e["node"]["mrn"] for e in body["data"]["newest"]["edges"]] == [
        "A00000",
        "A00001",
        "A00002",
        "A00003",
        "A00004",
    ]


async def test_appointment_filters(gql: GraphQL, dataset: fixtures.Dataset) -> None:
    everything = sum(len(a) for a in dataset.alpha.appointments.values())
    body = await gql(
        "query($p: ID!, $pt: ID!) {"
        " all: appointments { totalCount }"
        " booked: appointments(filter: {status: [BOOKED]}) { totalCount }"
        " either: appointments(filter: {status: [BOOKED, FULFILLED]}) { totalCount }"
        " mine: appointments(filter: {practitionerId: $p}) { totalCount }"
        " theirs: appointments(filter: {patientId: $pt}) { totalCount }"
        ' window: appointments(first: 100, filter: {startFrom: "2026-01-05T08:00:00Z",'
        '   startTo: "2026-01-05T09:00:00Z"}) { edges { node { startAt } } } }',
        {
            "p": to_global_id("Practitioner", dataset.alpha.practitioners[0]),
            "pt": to_global_id("Patient", dataset.alpha.patients[6]),
        },
    )
    data = body["data"]
    assert data["all"]["totalCount"] == everything
    assert data["either"]["totalCount"] == everything
    assert 0 < data["booked"]["totalCount"] < everything
    assert data["theirs"]["totalCount"] == 7
    assert 0 < data["mine"]["totalCount"] < everything
    # three practitioners, two 30-minute slots each in that hour, [from, to) bounds
    assert len(data["window"]["edges"]) == 6


async def test_encounter_filters(gql: GraphQL, dataset: fixtures.Dataset) -> None:
    everything = sum(len(e) for e in dataset.alpha.encounters.values())
    body = await gql(
        "{ all: encounters { totalCount }"
        "  amb: encounters(filter: {class: [AMB]}) { totalCount }"
        "  notAmb: encounters(filter: {class: [EMER, IMP, VR]}) { totalCount }"
        "  finished: encounters(filter: {status: [FINISHED]}) { totalCount }"
        "  planned: encounters(filter: {status: [PLANNED]}) { totalCount }"
        '  later: encounters(filter: {periodFrom: "2026-01-06T00:00:00Z"}) { totalCount }'
        "  recent: encounters(first: 3) { edges { node { periodStart } } } }"
    )
    data = body["data"]
    assert data["all"]["totalCount"] == everything
    assert data["amb"]["totalCount"] + data["notAmb"]["totalCount"] == everything
    assert data["finished"]["totalCount"] == everything
    assert data["planned"]["totalCount"] == 0
    assert 0 < data["later"]["totalCount"] < everything
    starts = [e["node"]["periodStart"] for e in data["recent"]["edges"]]
    assert starts == sorted(starts, reverse=True)


async def test_practitioner_filters(gql: GraphQL) -> None:
    body = await gql(
        "{ active: practitioners(filter: {active: true}) { totalCount }"
        '  cardio: practitioners(filter: {specialty: "Cardiology"}) { totalCount }'
        '  named: practitioners(filter: {namePrefix: "doctor1"}) {'
        "    edges { node { familyName } } } }"
    )
    assert body["data"]["active"]["totalCount"] == 2
    assert body["data"]["cardio"]["totalCount"] == 2
    assert body["data"]["named"]["edges"] == [{"node": {"familyName": "Doctor1"}}]
