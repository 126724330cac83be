"""The GraphQL schema: strawberry types compiled once into a graphql-core schema."""

from __future__ import annotations

import strawberry
from strawberry.schema.config import StrawberryConfig

from hms.schema.mutation import Mutation
from hms.schema.query import Query
from hms.schema.scalars import SCALARS
from hms.schema.types.nodes import Appointment, Encounter, Hospital, Patient, Practitioner

schema = strawberry.Schema(
    query=Query,
    mutation=Mutation,
    types=[Patient, Practitioner, Appointment, Encounter, Hospital],
    config=StrawberryConfig(scalar_map=SCALARS),
)

__all__ = ["schema"]
