"""The compiled read path: one statement per operation, the same answers as the interpreted path.

Every document below runs through the default app (compiled) and through the same app with
``HMS_EXECUTION=interpreted``; the two bodies must be identical, key order included. Requests the
compiler leaves to the interpreted path (errors, data-dependent errors) must come out identical
too — they are answered by the same code. tests/property/test_compiled_differential.py does the
same with generated documents.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette

import hms.compiler
from hms.resolvers.relay import CursorCodec, to_global_id
from tests import fixtures
from tests.api.test_batching import NESTED
from tests.conftest import GraphQL
from tests.statements import recorded

SNAPSHOTS = Path(__file__).parent / "snapshots"


@pytest.fixture(autouse=True)
def compiler_never_fails(
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> Iterator[None]:
    """A compiler failure is invisible in the answer (the interpreted path takes over), so every
    test here also checks that none was logged, but the one that breaks the compiler on purpose.
    Requests the compiler declines (``Deopt``, ``NotCovered``) are not failures."""
    yield
    if request.node.name != "test_a_compiler_failure_costs_the_request_nothing":
        assert "compiling a query failed" not in caplog.text


def compiled_statement(statements: list[str]) -> bool:
    """One statement, and the compiled one (the interpreted path can also need just one: a
    DataLoader batches two root lookups into one statement)."""
    return len(statements) == 1 and "::text AS data" in statements[0]


async def same(
    gql: GraphQL,
    igql: GraphQL,
    query: str,
    variables: dict[str, Any] | None = None,
    hospital: fixtures.HospitalData | None = None,
    *,
    compiled_by: Starlette | None = None,
) -> dict[str, Any]:
    """Both paths' answers, byte for byte alike; with ``compiled_by`` (the default app), the
    compiled side must also have been one statement, i.e. not left to the interpreted path."""
    if compiled_by is None:
        compiled = await gql(query, variables, hospital=hospital)
    else:
        with recorded(compiled_by.state.database.primary) as statements:
            compiled = await gql(query, variables, hospital=hospital)
        assert compiled_statement(statements), f"not compiled: {query}"
    interpreted = await igql(query, variables, hospital=hospital)
    assert orjson.dumps(compiled) == orjson.dumps(interpreted), query
    return compiled


@pytest.mark.parametrize("n", [1, 50, 100])
async def test_a_nested_document_is_one_statement(
    gql: GraphQL, igql: GraphQL, app: Starlette, n: int
) -> None:
    with recorded(app.state.database.primary) as statements:
        body = await gql(NESTED, {"n": n})
    assert len(body["data"]["patients"]["edges"]) == n
    assert compiled_statement(statements), statements
    assert body == await igql(NESTED, {"n": n})


async def test_everything_selected_is_still_one_statement(
    gql: GraphQL, app: Starlette, dataset: fixtures.Dataset
) -> None:
    patient = to_global_id("Patient", dataset.alpha.patients[5])
    query = """query($p: ID!) {
      viewer { userId roles hospital { id name } }
      patientStats { total active newLast30Days }
      patient(id: $p) { mrn appointments(first: 3) { totalCount edges { cursor node { id
        practitioner { familyName appointments(first: 2) { totalCount pageInfo { endCursor } } }
      } } pageInfo { hasNextPage endCursor } } encounters(first: 2) { totalCount } }
      patients(last: 3) { totalCount pageInfo { hasPreviousPage startCursor } }
      practitioners { edges { node { id } } }
      encounters(first: 2) { edges { node { appointment { id } practitioner { id } } } }
      appointments(first: 2, orderBy: {direction: DESC}) { edges { node { patient { id } } } }
    }"""
    with recorded(app.state.database.primary) as statements:
        body = await gql(query, {"p": patient})
    assert "errors" not in body
    assert compiled_statement(statements)


DOCUMENTS: list[tuple[str, dict[str, Any]]] = [
    (
        "{ __typename viewer { __typename userId roles"
        " hospital { __typename id slug name timezone } } }",
        {},
    ),
    ("{ patientStats { total active newLast30Days __typename } s2: patientStats { total } }", {}),
    (
        """query($n: Int, $dir: OrderDirection!) {
          byName: patients(first: $n) { totalCount edges { cursor node { ...P } }
            pageInfo { hasNextPage hasPreviousPage startCursor endCursor __typename } }
          byCreated: patients(first: 3, orderBy: {field: CREATED_AT, direction: $dir}) {
            edges { cursor node { id createdAt updatedAt } } }
        }
        fragment P on Patient { id mrn givenName familyName birthDate gender active version
          __typename }""",
        {"n": 7, "dir": "DESC"},
    ),
    (
        """{ patients(first: 4, filter: {active: true, gender: FEMALE}) {
             edges { node { mrn appointments(first: 2, filter: {status: [BOOKED, FULFILLED]}) {
               totalCount edges { cursor node { status startAt endAt reason cancellationReason
                 createdAt version patient { mrn } practitioner { givenName specialty active } } }
               pageInfo { hasNextPage hasPreviousPage endCursor } }
             encounters(first: 2, filter: {class: [AMB, IMP]}) { totalCount edges { node {
               class status periodStart periodEnd reason appointment { id } practitioner { id }
               patient { mrn } } } } } } } }""",
        {},
    ),
    (
        """query($skip: Boolean!, $inc: Boolean!) { practitioners(first: 3) { edges { node {
             id familyName @skip(if: $skip) givenName @include(if: $inc)
             ... on Practitioner { specialty alias: givenName }
             appointments(first: 1) @include(if: $inc) { edges { node { id } } } } } } }""",
        {"skip": True, "inc": False},
    ),
    (
        """query($skip: Boolean!, $inc: Boolean!) { practitioners(first: 3) { edges { node {
             id familyName @skip(if: $skip) givenName @include(if: $inc)
             appointments(first: 1) @include(if: $inc) { edges { node { id } } } } } } }""",
        {"skip": False, "inc": True},
    ),
    (
        """{ a: appointments(first: 5) { edges { node { id startAt } } pageInfo { endCursor } }
             b: appointments(last: 3, orderBy: {field: START_AT, direction: DESC}) {
               edges { node { id startAt } } pageInfo { hasNextPage hasPreviousPage
                 startCursor endCursor } }
             c: encounters(last: 2) { edges { cursor } pageInfo { hasNextPage hasPreviousPage } }
             d: appointments(first: 0) { edges { cursor } pageInfo { hasNextPage endCursor } } }""",
        {},
    ),
    (
        """query($f: PatientFilter) { patients(first: 3, filter: $f) { totalCount
             edges { node { familyName } } } }""",
        {"f": {"namePrefix": "Ad", "createdFrom": "2000-01-01T00:00:00+00:00"}},
    ),
    ("query($f: PatientFilter) { patients(first: 3, filter: $f) { totalCount } }", {"f": None}),
    ("query($f: PatientFilter) { patients(first: 3, filter: $f) { totalCount } }", {}),
    (
        """{ patients(first: 2, filter: {namePrefix: "%"}) { totalCount }
             p2: patients(filter: {namePrefix: ""}) { totalCount } }""",
        {},
    ),
    ("{ nodes(ids: []) { id } }", {}),
    ('{ patientByMrn(mrn: "A00003") { id mrn } none: patientByMrn(mrn: "nope") { id } }', {}),
]


@pytest.mark.parametrize(("query", "variables"), DOCUMENTS)
async def test_both_paths_answer_the_same(
    gql: GraphQL, igql: GraphQL, app: Starlette, query: str, variables: dict[str, Any]
) -> None:
    body = await same(gql, igql, query, variables, compiled_by=app)
    assert "errors" not in body, body


async def test_nodes_of_every_type_in_order(
    gql: GraphQL, igql: GraphQL, app: Starlette, dataset: fixtures.Dataset
) -> None:
    alpha, beta = dataset.alpha, dataset.beta
    appointment = next(ids[0] for ids in alpha.appointments.values() if ids)
    encounter = next(ids[0] for ids in alpha.encounters.values() if ids)
    ids = [
        to_global_id("Patient", alpha.patients[0]),
        to_global_id("Hospital", alpha.id),
        to_global_id("Hospital", beta.id),  # another hospital's: null
        to_global_id("Appointment", appointment),
        to_global_id("Practitioner", beta.practitioners[0]),  # null
        to_global_id("Encounter", encounter),
        to_global_id("Practitioner", alpha.practitioners[1]),
    ]
    query = """query($ids: [ID!]!, $one: ID!) {
      nodes(ids: $ids) { __typename id
        ... on Patient { mrn } ... on Hospital { slug }
        ... on Appointment { status patient { mrn } }
        ... on Encounter { class } ... on Practitioner { familyName } }
      node(id: $one) { id ... on Patient { givenName } }
    }"""
    body = await same(gql, igql, query, {"ids": ids, "one": ids[0]}, compiled_by=app)
    assert [n and n["__typename"] for n in body["data"]["nodes"]] == [
        "Patient",
        "Hospital",
        None,
        "Appointment",
        None,
        "Encounter",
        "Practitioner",
    ]


async def test_pages_anchored_by_cursors(
    gql: GraphQL, igql: GraphQL, dataset: fixtures.Dataset
) -> None:
    first = await gql("{ patients(first: 5) { pageInfo { endCursor } } }")
    cursor = first["data"]["patients"]["pageInfo"]["endCursor"]
    query = """query($c: String) {
      after: patients(first: 4, after: $c) { edges { node { mrn } } pageInfo {
        hasNextPage hasPreviousPage startCursor endCursor } }
      before: patients(last: 2, before: $c) { edges { node { mrn } } pageInfo {
        hasNextPage hasPreviousPage startCursor endCursor } }
    }"""
    body = await same(gql, igql, query, {"c": cursor})
    assert len(body["data"]["after"]["edges"]) == 4
    nested = """query($id: ID!, $c: String) { patient(id: $id) { appointments(first: 2, after: $c)
      { edges { cursor node { id } } pageInfo { hasNextPage hasPreviousPage endCursor } } } }"""
    patient = to_global_id("Patient", dataset.alpha.patients[6])
    page = await same(gql, igql, nested, {"id": patient, "c": None})
    end = page["data"]["patient"]["appointments"]["pageInfo"]["endCursor"]
    await same(gql, igql, nested, {"id": patient, "c": end})


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ("{ patients(first: 101) { totalCount } }", {}),
        ("{ patients(first: 1, last: 1) { totalCount } }", {}),
        ('{ patients(after: "garbage") { totalCount } }', {}),
        ('{ node(id: "garbage") { id } }', {}),
        ("query($ids: [ID!]!) { nodes(ids: $ids) { id } }", {"ids": ["x"]}),
        ('{ patients(filter: {namePrefix: "%s"}) { totalCount } }' % ("x" * 101), {}),
        ("query($n: Int) { patients(first: $n) { totalCount } }", {"n": "two"}),
        ("{ patients { edges { node { encounters(first: -1) { totalCount } } } } }", {}),
        ("{ __schema { queryType { name } } }", {}),
    ],
)
async def test_requests_left_to_the_interpreted_path_answer_the_same(
    gql: GraphQL, igql: GraphQL, query: str, variables: dict[str, Any]
) -> None:
    await same(gql, igql, query, variables)


async def test_a_cursor_no_visible_row_anchors_is_found_by_the_statement(
    gql: GraphQL, igql: GraphQL, app: Starlette, dataset: fixtures.Dataset
) -> None:
    """Only the data reveals it: the statement says so and the interpreted path answers."""
    foreign = CursorCodec("patients:name:asc").encode(
        type("Row", (), {"id": dataset.beta.patients[0]})
    )
    query = "query($c: String) { patients(first: 2, after: $c) { totalCount } }"
    with recorded(app.state.database.primary) as statements:
        body = await same(gql, igql, query, {"c": foreign})
    assert body["errors"][0]["message"].startswith("Invalid cursor in 'after'")
    assert len(statements) >= 2  # the compiled statement, then the interpreted path's own


def plans_of(compiler: Any, query: str) -> list[Any]:
    (found,) = [
        entry.plans for entry in compiler._plans.values() if entry.document.loc.source.body == query
    ]
    return list(found)


def variants(compiler: Any, query: str) -> int:
    return len(plans_of(compiler, query))


async def test_one_plan_serves_every_request_of_its_shape(
    gql: GraphQL, app: Starlette, dataset: fixtures.Dataset
) -> None:
    compiler = app.state.pipeline.compiler
    query = (
        "query($id: ID!, $f: PatientFilter) { patient(id: $id) { mrn }"
        " patients(filter: $f) { totalCount } }"
    )
    for pk in dataset.alpha.patients[:5]:
        await gql(query, {"id": to_global_id("Patient", pk)})
    assert variants(compiler, query) == 1
    await gql(
        query, {"id": to_global_id("Patient", dataset.alpha.patients[0]), "f": {"active": True}}
    )
    assert variants(compiler, query) == 2  # another filter shape, another variant


async def test_the_nested_dashboard_plan(app: Starlette, gql: GraphQL) -> None:
    """The plan is data: its SQL is pinned here (tests/api/snapshots/nested.sql)."""
    await gql(NESTED, {"n": 50})
    compiler = app.state.pipeline.compiler
    (plan,) = plans_of(compiler, NESTED)
    expected = (SNAPSHOTS / "nested.sql").read_text().strip()
    assert plan.sql == expected


BASE = (
    "{ patients(first: 4) { edges { node { mrn givenName appointments(first: 2) {"
    " edges { node { status practitioner { familyName } } } } } } } }"
)
REWRITES = [
    # fragments, named and inline
    "{ patients(first: 4) { edges { node { ...P } } } }"
    " fragment P on Patient { mrn givenName appointments(first: 2) { ...A } }"
    " fragment A on AppointmentConnection {"
    " edges { node { status practitioner { familyName } } } }",
    "{ patients(first: 4) { edges { node { ... on Patient { mrn } givenName"
    " appointments(first: 2) { edges { ... on AppointmentEdge { node { status"
    " practitioner { ... { familyName } } } } } } } } } }",
    # duplicated fields merge
    "{ patients(first: 4) { edges { node { mrn mrn givenName appointments(first: 2) {"
    " edges { node { status } } } appointments(first: 2) { edges { node { status"
    " practitioner { familyName } practitioner { familyName } } } } } } } }",
    # a field skipped and included again
    "{ patients(first: 4) { edges { node { mrn givenName birthDate @skip(if: true)"
    " appointments(first: 2) @include(if: true) { edges { node { status"
    " practitioner { familyName } } } } } } } }",
]


@pytest.mark.parametrize("rewrite", REWRITES)
async def test_rewriting_a_selection_changes_nothing(gql: GraphQL, rewrite: str) -> None:
    """Metamorphic: fragments, duplicates and directives that cancel out give the same JSON."""
    assert orjson.dumps(await gql(rewrite)) == orjson.dumps(await gql(BASE))


async def test_aliases_rename_keys_and_nothing_else(gql: GraphQL) -> None:
    aliased = (
        "{ p: patients(first: 4) { e: edges { n: node { m: mrn givenName"
        " a: appointments(first: 2) { edges { node { s: status practitioner { familyName } } } }"
        " } } } }"
    )
    renamed = (
        orjson.dumps(await gql(aliased))
        .replace(b'"p":', b'"patients":')
        .replace(b'"e":', b'"edges":')
        .replace(b'"n":', b'"node":')
        .replace(b'"m":', b'"mrn":')
        .replace(b'"a":', b'"appointments":')
        .replace(b'"s":', b'"status":')
    )
    assert renamed == orjson.dumps(await gql(BASE))


async def test_a_compiler_failure_costs_the_request_nothing(
    gql: GraphQL,
    igql: GraphQL,
    app: Starlette,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug in the compiler is logged and the interpreted path answers instead."""

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a compiler bug")

    monkeypatch.setattr(hms.compiler, "compile_plan", broken)
    query = "{ practitioners(first: 2, filter: {active: false}) { totalCount } }"
    body = await gql(query)
    assert body == await igql(query)
    assert "compiling a query failed" in caplog.text
