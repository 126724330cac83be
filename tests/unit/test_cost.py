"""The static cost of operations, exact, with the arithmetic written out (issue 9).

Weights, from the directives in schema.graphql: a connection field 1, each node 1 (an edge
0), ``totalCount`` 1, ``patientStats`` 10, a mutation field 10, other object fields 1, scalars
and enums 0; a connection holds ``first``/``last`` nodes, else 20.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from graphql import DocumentNode, OperationDefinitionNode, parse
from graphql.execution.values import get_variable_values

from hms.limits.cost import INTROSPECTION, CostModel, Formula, rules_from_sdl
from hms.schema import schema
from tests.api.test_batching import NESTED as DASHBOARD

SCHEMA = schema._schema
MODEL = CostModel(SCHEMA, rules_from_sdl(schema.as_str()), max_page_size=100)


def formula(
    query: str | DocumentNode, variables: dict[str, Any] | None = None
) -> tuple[Formula, dict[str, Any]]:
    document = parse(query) if isinstance(query, str) else query
    operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    coerced = get_variable_values(SCHEMA, operation.variable_definitions or (), variables or {})
    assert not isinstance(coerced, list), coerced
    return MODEL.formula(document, operation, coerced), coerced.coerced


def cost(query: str, variables: dict[str, Any] | None = None) -> int:
    found, values = formula(query, variables)
    return found.cost(values)


@pytest.mark.parametrize(
    ("query", "variables", "expected"),
    [
        # patientStats 10; its scalars 0.
        ("{ patientStats { total active } }", None, 10),
        # viewer 1 + hospital 1.
        ("{ viewer { userId roles hospital { name } } }", None, 2),
        # patients 1 + 20 nodes (no first: the default page) * 1.
        ("{ patients { edges { node { mrn } } } }", None, 1 + 20 * 1),
        # patients 1 + totalCount 1 + pageInfo 1; no edges, no nodes.
        ("{ patients(first: 50) { totalCount pageInfo { hasNextPage } } }", None, 3),
        # 1 + 50 * (node 1 + appointments (1 + 5 * (node 1 + practitioner 1))
        #          + encounters (1 + 3 * node 1)) = 1 + 50 * (1 + 11 + 4) = 801.
        (DASHBOARD, {"n": 50}, 801),
        (DASHBOARD, {"n": 20}, 1 + 20 * 16),
        # first: 0 reads no nodes: 1.
        ("{ patients(first: 0) { edges { node { id } } } }", None, 1),
        # last counts like first.
        ("{ patients(last: 7) { edges { cursor node { id } } } }", None, 1 + 7),
        # Above the page limit counts as the limit (refused before anything is read): 1 + 100.
        ("{ patients(first: 5000) { edges { node { id } } } }", None, 101),
        # nodes: one per id, each 1 + Patient's appointments (1 + totalCount 1): 2 * 3.
        (
            '{ nodes(ids: ["a", "b"]) { id ... on Patient { appointments { totalCount } } } }',
            None,
            2 * (1 + 2),
        ),
        ("query($ids: [ID!]!) { nodes(ids: $ids) { id } }", {"ids": ["a"] * 7}, 7),
        # A mutation field 10 + patient 1.
        (
            'mutation { createPatient(input: {mrn: "X", givenName: "A", familyName: "B"})'
            " { patient { id } userErrors { code } } }",
            None,
            10 + 1 + 1,
        ),
        # Introspection: fixed, whatever it selects.
        ("{ __schema { types { name fields { name } } } }", None, INTROSPECTION),
        ("{ __typename }", None, 0),
        # Two root fields add up: 10 + 10.
        ("{ a: patientStats { total } b: patientStats { total } }", None, 20),
    ],
)
def test_exact_costs(query: str, variables: dict[str, Any] | None, expected: int) -> None:
    assert cost(query, variables) == expected


def test_a_variable_page_size_is_read_per_request_from_one_formula() -> None:
    document = parse(DASHBOARD)
    first, values = formula(document, {"n": 50})
    second, other = formula(document, {"n": 10})
    assert first is second  # cached: only the sizes change
    assert (first.cost(values), first.cost(other)) == (801, 1 + 10 * 16)


def test_null_or_absent_page_size_variables_count_the_default_page() -> None:
    query = "query($n: Int) { patients(first: $n) { edges { node { id } } } }"
    assert cost(query, {"n": None}) == 21
    assert cost(query, {}) == 21
    assert cost(query, {"n": -3}) == 1  # refused later; it reads nothing


def test_fragments_cost_what_the_executor_runs() -> None:
    plain = """{ patients(first: 10) { edges { node {
        id mrn appointments(first: 2) { totalCount } } } } }"""
    rewritten = """
      { patients(first: 10) { edges { node { ...A ...B ... on Patient { id } } } } }
      fragment A on Patient { id mrn appointments(first: 2) { totalCount } }
      fragment B on Patient { appointments(first: 2) { totalCount } mrn }
    """
    # 1 + 10 * (node 1 + appointments 1 + totalCount 1) = 31, selected once however spelled.
    assert cost(plain) == cost(rewritten) == 31


def test_skip_and_include_follow_the_variables() -> None:
    query = """query($with: Boolean!) { patients(first: 10) { edges { node {
        id appointments(first: 5) @include(if: $with) { edges { node { id } } } } } } }"""
    assert cost(query, {"with": False}) == 1 + 10 * 1
    assert cost(query, {"with": True}) == 1 + 10 * (1 + 1 + 5)


def test_an_abstract_field_costs_its_most_expensive_type() -> None:
    query = """{ node(id: "x") { id
        ... on Patient { appointments(first: 4) { edges { node { id } } } }
        ... on Practitioner { appointments(first: 9) { edges { node { id } } } } } }"""
    assert cost(query) == 1 + (1 + 9)


def test_shape_figures() -> None:
    found, _ = formula(
        """{ a: patients(first: 1) { edges { node { b: mrn appointments(first: 1) { edges {
             node { practitioner { familyName } } } } } } } patientStats { total } }"""
    )
    # a.edges.node.appointments.edges.node.practitioner.familyName: eight levels.
    assert (found.depth, found.aliases, found.root_fields) == (8, 2, 2)


def test_the_actual_cost_counts_what_came_back() -> None:
    found, values = formula(DASHBOARD, {"n": 3})
    data = {
        "patients": {
            "edges": [
                {"node": {"mrn": "1", "appointments": {"edges": []}, "encounters": {"edges": []}}},
                {
                    "node": {
                        "mrn": "2",
                        "appointments": {
                            "edges": [{"node": {"startAt": "x", "practitioner": None}}] * 2
                        },
                        "encounters": {"edges": [{"node": {"class": "AMB"}}]},
                    }
                },
            ]
        }
    }
    # patients 1 + first patient (1 + 1 + 1) + second (1 + (1 + 2 * (1 + 1)) + (1 + 1)).
    assert found.actual(data) == 1 + 3 + (1 + 5 + 2)
    assert found.actual(data) <= found.cost(values) == 1 + 3 * 16
    assert found.actual(None) == 0


def test_hot_paths_name_the_expensive_branch() -> None:
    found, values = formula(
        "{ patientStats { total } patients(first: 100) { edges { node { appointments(first: 100)"
        " { edges { node { id } } } } } } }"
    )
    assert found.hot_paths(values)[0] == {
        "path": "patients.edges.node.appointments.edges.node",
        "cost": 1 + 100 * (1 + 1 + 100),
    }


def test_the_text_of_an_answer_counts_as_its_decoded_data() -> None:
    found, values = formula(DASHBOARD, {"n": 3})
    data = {
        "patients": {
            "edges": [
                {"node": {"mrn": '"node":{', "appointments": {"edges": []}, "encounters": None}},
                {
                    "node": {
                        "mrn": 'x\\"appointments\\":',
                        "appointments": {"edges": [{"node": {"practitioner": None}}]},
                        "encounters": {"edges": []},
                    }
                },
            ]
        }
    }
    text = orjson.dumps(data)
    assert b'"node":{' in text  # inside a string it is escaped: \"node\":{
    assert found.countable
    # patients 1, node 2 + 1, appointments 2, encounters 2 (one null), practitioner 1 (null).
    assert found.actual_text(text, values) == found.actual(data) == 1 + 3 + 2 + 2 + 1


def test_root_lists_count_their_items_and_nested_ones_make_the_text_uncountable() -> None:
    nodes, values = formula("query($ids: [ID!]!) { nodes(ids: $ids) { id } }", {"ids": ["a"] * 4})
    assert nodes.countable
    answer = {"nodes": [{"id": "a"}, None, None, {"id": "b"}]}
    assert nodes.actual_text(orjson.dumps(answer), values) == nodes.actual(answer) == 4
    mutation, _ = formula(
        'mutation { createPatient(input: {mrn: "X", givenName: "A", familyName: "B"})'
        " { userErrors { code } } }"
    )
    assert not mutation.countable  # userErrors: a weighted list below the root
    assert mutation.actual({"createPatient": {"userErrors": [{"code": "X"}] * 3}}) == 10 + 3


def test_a_key_with_two_weights_is_counted_on_decoded_data() -> None:
    found, _ = formula(
        '{ patient(id: "x") { node: mrn appointments(first: 1) { edges { node { id } } } } }'
    )
    assert not found.countable
    answer = {"patient": {"node": "A1", "appointments": {"edges": [{"node": {"id": "1"}}]}}}
    # patient 1 + appointments 1 + one appointment node 1; the aliased mrn weighs nothing.
    assert found.actual(answer) == 3
