"""The field mapping covers the schema, and its formatting rules hold for every value."""

from __future__ import annotations

import enum

import pytest
from graphql import GraphQLEnumType, GraphQLObjectType, get_named_type

from hms.compiler.compile import ROOT_FIELDS
from hms.resolvers.fields import INTERPRETED_ONLY, OBJECTS, Kind, Leaf, enum_name
from hms.schema import schema

GRAPHQL = schema._schema


@pytest.mark.parametrize("type_name", sorted(OBJECTS))
def test_every_field_is_mapped_or_marked_interpreted_only(type_name: str) -> None:
    graphql_type = GRAPHQL.get_type(type_name)
    assert isinstance(graphql_type, GraphQLObjectType)
    in_schema = set(graphql_type.fields)
    mapped = set(OBJECTS[type_name].fields)
    marked = {field for (owner, field) in INTERPRETED_ONLY if owner == type_name}
    assert in_schema - mapped - marked == set(), "fields with no SQL mapping"
    assert mapped - in_schema == set(), "mappings of fields the schema does not have"


def test_every_mapped_column_exists() -> None:
    for type_name, mapping in OBJECTS.items():
        for field, target in mapping.fields.items():
            if isinstance(target, Leaf):
                assert target.column in mapping.table.c, (type_name, field)


def test_enum_names_follow_from_the_stored_codes() -> None:
    """The compiler formats enums in SQL by this one rule; every enum value must obey it."""
    checked = 0
    for type_name, mapping in OBJECTS.items():
        graphql_type = GRAPHQL.get_type(type_name)
        assert isinstance(graphql_type, GraphQLObjectType)
        for field, target in mapping.fields.items():
            if isinstance(target, Leaf) and target.kind is Kind.ENUM:
                enum_type = get_named_type(graphql_type.fields[field].type)
                assert isinstance(enum_type, GraphQLEnumType)
                for name, value in enum_type.values.items():
                    code = value.value.value if isinstance(value.value, enum.Enum) else value.value
                    assert enum_name(code) == name
                    checked += 1
    assert checked > 20


def test_every_query_field_is_compiled() -> None:
    """A new root field fails here until the compiler translates it (or it is marked)."""
    query = GRAPHQL.query_type
    assert query is not None
    marked = {field for (owner, field) in INTERPRETED_ONLY if owner == "Query"}
    assert set(query.fields) - ROOT_FIELDS - marked == set()
