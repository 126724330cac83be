"""The committed schema.graphql is the reviewed contract: it must match the code."""

from __future__ import annotations

from pathlib import Path

from hms.schema import schema

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schema.graphql"


def test_schema_graphql_has_no_drift() -> None:
    assert SCHEMA_FILE.read_text() == schema.as_str() + "\n", (
        "schema.graphql is out of date: run `make schema` (hms export-schema) and review the diff"
    )


def test_contract_names_of_design_section_5() -> None:
    sdl = SCHEMA_FILE.read_text()
    for name in (
        "interface Node",
        "node(id: ID!): Node",
        "nodes(ids: [ID!]!): [Node]!",
        "viewer: Viewer!",
        "patientByMrn(mrn: String!): Patient",
        "patientStats: PatientStats!",
        "CHECKED_IN",
        "ENTERED_IN_ERROR",
        "IN_PROGRESS",
        "totalCount: Int!",
        "hasNextPage: Boolean!",
    ):
        assert name in sdl, name
