"""The GraphQL schema: strawberry types compiled once into a graphql-core schema."""

from __future__ import annotations

import strawberry

from hms.schema.mutation import Mutation
from hms.schema.query import Query
from hms.schema.types.nodes import Appointment, Encounter, Hospital, Patient, Practitioner

schema = strawberry.Schema(
    query=Query,
    mutation=Mutation,
    types=[Patient, Practitioner, Appointment, Encounter, Hospital],
)

__all__ = ["schema"]
