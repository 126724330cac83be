"""Bad input is refused at the boundary, naming the field, and writes nothing (issue 6, defects
2 and 4).

Before: NUL characters, instants outside PostgreSQL's range and huge lists reached the driver
and came back as masked internal errors (with the SQL parameters in the error log), and a
mutation document with one such field answered ``data: null`` although its other fields had
committed.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests import fixtures
from tests.api.writes import CREATE_PATIENT, rows
from tests.conftest import GraphQL, token

GRAPHQL_RESPONSE = "application/graphql-response+json"
Hospital = fixtures.HospitalData

APPOINTMENTS = "query($f: AppointmentFilter) { appointments(filter: $f) { totalCount } }"


async def post(
    client: httpx.AsyncClient, hospital: Hospital, query: str, variables: dict[str, Any] | None
) -> httpx.Response:
    return await client.post(
        "/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {token(hospital)}", "Accept": GRAPHQL_RESPONSE},
    )


async def patients_named(database_url: str, hospital: Hospital, mrn_prefix: str) -> int:
    found = await rows(
        database_url,
        "SELECT count(*) AS n FROM patient WHERE hospital_id = $1 AND mrn LIKE $2",
        hospital.id,
        f"{mrn_prefix}%",
    )
    return int(found[0]["n"])


@pytest.mark.parametrize(
    ("variables", "where"),
    [
        (
            {"input": {"mrn": "B-NUL", "givenName": "Bad\x00", "familyName": "X"}},
            "$input.givenName",
        ),
        ({"input": {"mrn": "B-NUL\x00", "givenName": "A", "familyName": "X"}}, "$input.mrn"),
        (
            {
                "input": {
                    "mrn": "B-LONG",
                    "givenName": "A" * (10_001),
                    "familyName": "X",
                }
            },
            "$input.givenName",
        ),
    ],
)
async def test_bad_strings_in_variables_are_request_errors_naming_the_field(
    client: httpx.AsyncClient,
    ward: Hospital,
    database_url: str,
    variables: dict[str, Any],
    where: str,
) -> None:
    response = await post(client, ward, CREATE_PATIENT, variables)
    assert response.status_code == 400
    body = response.json()
    assert "data" not in body
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert f"'{where}'" in error["message"]
    assert await patients_named(database_url, ward, "B-") == 0


async def test_the_issues_two_field_document_commits_nothing(
    client: httpx.AsyncClient, ward: Hospital, database_url: str
) -> None:
    """``a`` is valid, ``b`` carries a NUL: the document is refused before ``a`` can run."""
    query = """mutation {
      a: createPatient(input: {mrn: "B-A", givenName: "Ann", familyName: "Able"}) { patient { id } }
      b: createPatient(input: {mrn: "B-B", givenName: "Bad\\u0000", familyName: "X"}) {
        patient { id }
      }
    }"""
    response = await post(client, ward, query, None)
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "'input.givenName'" in error["message"]
    assert "NUL" in error["message"]
    assert await patients_named(database_url, ward, "B-") == 0


@pytest.mark.parametrize("instant", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
async def test_instants_outside_the_range_are_refused(
    client: httpx.AsyncClient, ward: Hospital, database_url: str, instant: str
) -> None:
    as_variable = await post(client, ward, APPOINTMENTS, {"f": {"startFrom": instant}})
    assert as_variable.status_code == 400
    (error,) = as_variable.json()["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "startFrom" in error["message"]
    assert "outside the supported range" in error["message"]

    # The issue's second case: a valid createPatient whose payload selection has such a filter.
    query = (
        'mutation { createPatient(input: {mrn: "B-D", givenName: "Dee", familyName: "Date"}) '
        f'{{ patient {{ appointments(filter: {{startFrom: "{instant}"}}) {{ totalCount }} }} }} }}'
    )
    as_literal = await post(client, ward, query, None)
    assert as_literal.status_code == 400
    (error,) = as_literal.json()["errors"]
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "outside the supported range" in error["message"]
    assert await patients_named(database_url, ward, "B-D") == 0


async def test_lists_past_the_maximum_are_refused_not_sent_to_the_driver(
    client: httpx.AsyncClient, dataset: fixtures.Dataset
) -> None:
    huge = {"f": {"status": ["BOOKED"] * 40_000}}
    response = await post(client, dataset.alpha, APPOINTMENTS, huge)
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["message"] == "Variable '$f.status' must have at most 100 items, got 40000"

    literal = "[" + ", ".join(["BOOKED"] * 101) + "]"
    response = await post(
        client,
        dataset.alpha,
        f"{{ appointments(filter: {{status: {literal}}}) {{ totalCount }} }}",
        None,
    )
    assert response.status_code == 400
    assert "'filter.status' must have at most" in response.json()["errors"][0]["message"]

    at_limit = {"f": {"status": ["BOOKED"] * 100}}
    response = await post(client, dataset.alpha, APPOINTMENTS, at_limit)
    assert response.status_code == 200
    assert "errors" not in response.json()


@pytest.mark.parametrize(
    ("query", "variables", "argument"),
    [
        (
            "query($p: String) { patients(filter: {namePrefix: $p}) { totalCount } }",
            {"p": "x" * 101},
            "filter.namePrefix",
        ),
        (
            "query($p: String) { practitioners(filter: {namePrefix: $p}) { totalCount } }",
            {"p": "x" * 101},
            "filter.namePrefix",
        ),
        (
            "query($s: String) { practitioners(filter: {specialty: $s}) { totalCount } }",
            {"s": "x" * 101},
            "filter.specialty",
        ),
        ("query($m: String!) { patientByMrn(mrn: $m) { id } }", {"m": "A" * 33}, "mrn"),
    ],
)
async def test_string_filters_have_their_own_limits(
    gql: GraphQL, query: str, variables: dict[str, Any], argument: str
) -> None:
    body = await gql(query, variables)
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["argument"] == argument
    assert error["message"].startswith(f"'{argument}' must be at most")


async def test_string_filters_at_their_limits_run(gql: GraphQL) -> None:
    body = await gql(
        "query($p: String, $m: String!) { patients(filter: {namePrefix: $p}) { totalCount }"
        " patientByMrn(mrn: $m) { id } }",
        {"p": "x" * 100, "m": "A" * 32},
    )
    assert body == {"data": {"patients": {"totalCount": 0}, "patientByMrn": None}}


async def test_a_100_kb_name_prefix_costs_nothing(
    client: httpx.AsyncClient, dataset: fixtures.Dataset
) -> None:
    """The issue's 38-second query: refused before it reaches PostgreSQL."""
    response = await post(
        client,
        dataset.alpha,
        "query($p: String) { patients(filter: {namePrefix: $p}) { totalCount } }",
        {"p": "y" * 100_000},
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize("name", ["\u200b\u200b", "\u200d", "\ufeff\u200b", "\u00ad", " \u200b "])
async def test_names_of_only_invisible_characters_are_validation_errors(
    gql: GraphQL, ward: Hospital, name: str, database_url: str
) -> None:
    body = await gql(
        CREATE_PATIENT,
        {"input": {"mrn": "B-INV", "givenName": name, "familyName": "Visible"}},
        hospital=ward,
    )
    payload = body["data"]["createPatient"]
    assert payload["patient"] is None
    assert payload["userErrors"][0]["field"] == ["input", "givenName"]
    assert payload["userErrors"][0]["code"] == "VALIDATION"
    assert await patients_named(database_url, ward, "B-INV") == 0


async def test_control_characters_in_names_are_validation_errors(
    gql: GraphQL, ward: Hospital
) -> None:
    body = await gql(
        CREATE_PATIENT,
        {"input": {"mrn": "B-CC", "givenName": "An\x07na", "familyName": "Bell"}},
        hospital=ward,
    )
    assert body["data"]["createPatient"]["userErrors"][0]["message"] == (
        "Must not contain control characters"
    )


async def test_the_string_limit_is_exact(
    client: httpx.AsyncClient, dataset: fixtures.Dataset
) -> None:
    """10,000 characters pass the floor (and meet the field's own limit), 10,001 do not."""
    query = "query($m: String!) { patientByMrn(mrn: $m) { id } }"
    at_limit = await post(client, dataset.alpha, query, {"m": "A" * 10_000})
    assert at_limit.json()["errors"][0]["extensions"]["argument"] == "mrn"  # the field's limit
    past = await post(client, dataset.alpha, query, {"m": "A" * 10_001})
    assert past.json()["errors"][0]["message"] == ("Variable '$m' must be at most 10000 characters")


@pytest.mark.parametrize(
    ("variables", "where"),
    [
        ({"ids": ["Zm9v", "bad\x00"]}, "$ids[1]"),
        ({"ids": ["Zm9v"] * 101}, "$ids"),
    ],
)
async def test_items_of_lists_are_checked_too(
    client: httpx.AsyncClient, dataset: fixtures.Dataset, variables: dict[str, Any], where: str
) -> None:
    response = await post(
        client, dataset.alpha, "query($ids: [ID!]!) { nodes(ids: $ids) { id } }", variables
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"].startswith(f"Variable '{where}'")


@pytest.mark.parametrize("key", ["bad\x00key", "k" * 10_001])
async def test_input_object_keys_are_checked(
    client: httpx.AsyncClient, dataset: fixtures.Dataset, key: str
) -> None:
    response = await post(client, dataset.alpha, APPOINTMENTS, {"f": {key: 1}})
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"] == (
        "Variable '$f' has a field name that is not allowed"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (5, "DateTime must be a string like 2027-03-01T09:00:00+01:00"),
        ("yesterday", "DateTime must be RFC 3339, like 2027-03-01T09:00:00+01:00"),
        ("2027-03-01T09:00:00", "DateTime needs a UTC offset (RFC 3339), like +00:00 or Z"),
    ],
)
async def test_datetimes_that_are_not_rfc_3339_instants_are_refused(
    client: httpx.AsyncClient, dataset: fixtures.Dataset, value: Any, message: str
) -> None:
    response = await post(client, dataset.alpha, APPOINTMENTS, {"f": {"startFrom": value}})
    assert response.status_code == 400
    assert message in response.json()["errors"][0]["message"]
