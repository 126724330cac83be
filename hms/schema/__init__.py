"""The GraphQL schema: strawberry types compiled once into a graphql-core schema."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLField
from strawberry.schema.config import StrawberryConfig
from strawberry.types.arguments import convert_arguments

from hms.schema.mutation import Mutation
from hms.schema.query import Query
from hms.schema.scalars import SCALARS
from hms.schema.types.nodes import (
    Appointment,
    Encounter,
    Hospital,
    Patient,
    Practitioner,
    Report,
)

schema = strawberry.Schema(
    query=Query,
    mutation=Mutation,
    types=[Patient, Practitioner, Appointment, Encounter, Hospital, Report],
    config=StrawberryConfig(scalar_map=SCALARS),
)


def arguments(field: GraphQLField, values: dict[str, Any]) -> dict[str, Any]:
    """A field's coerced GraphQL arguments as its resolver receives them from strawberry:
    Python names, input objects as their classes, enums as members. The compiled read path
    reads arguments through this, so both paths see the same values."""
    definition = field.extensions["strawberry-definition"]
    return convert_arguments(
        values, definition.arguments, schema.schema_converter.scalar_registry, schema.config
    )


__all__ = ["arguments", "schema"]
