"""Cost directives of the IBM GraphQL Cost Directive specification, on the schema (issue 9).

They are printed in ``schema.graphql``, so clients and reviewers see what a field costs, and
:mod:`hms.limits.cost` reads them from that SDL. ``weight`` is a string in the spec (it may be
a decimal); HMS uses whole numbers.
"""

from __future__ import annotations

import strawberry
from strawberry.schema_directive import Location

from hms.limits.cost import MUTATION_WEIGHT
from hms.security.policy import FieldClass
from hms.settings import DEFAULT_PAGE_SIZE


@strawberry.schema_directive(
    locations=[Location.FIELD_DEFINITION],
    name="cost",
    description="The weight of a field in the operation's cost (IBM cost directive).",
)
class Cost:
    weight: str


@strawberry.schema_directive(
    locations=[Location.FIELD_DEFINITION],
    name="listSize",
    description=(
        "How many items a list field or a connection returns: the value of a slicing argument"
        " (a list argument counts its items), else assumedSize; a connection's size applies to"
        " its sizedFields (IBM cost directive)."
    ),
)
class ListSize:
    assumed_size: int | None = strawberry.UNSET
    slicing_arguments: list[str] | None = strawberry.UNSET
    sized_fields: list[str] | None = strawberry.UNSET


#: A Relay connection: ``first``/``last`` items (the default page size when neither is given)
#: in ``edges``.
PAGE = ListSize(
    assumed_size=DEFAULT_PAGE_SIZE, slicing_arguments=["first", "last"], sized_fields=["edges"]
)
#: A connection nested in an object: forward only.
NESTED_PAGE = ListSize(
    assumed_size=DEFAULT_PAGE_SIZE, slicing_arguments=["first"], sized_fields=["edges"]
)
#: ``nodes(ids:)``: one item per id.
BY_IDS = ListSize(slicing_arguments=["ids"])
#: An edge is not a row: its node is what costs.
EDGES = Cost(weight="0")
#: ``totalCount``: a count over the filtered set, run only when selected.
COUNT = Cost(weight="1")
#: A mutation field.
MUTATION = Cost(weight=str(MUTATION_WEIGHT))
#: Reads that aggregate over a hospital's whole table (``patientStats``).
AGGREGATE = Cost(weight="10")


PhiClass = strawberry.enum(
    FieldClass, name="PhiClass", description="What a field tells about a patient (SECURITY.md)."
)


@strawberry.schema_directive(
    locations=[Location.FIELD_DEFINITION],
    name="phi",
    description=(
        "The class of patient information a field holds; the role policy (SECURITY.md) says who"
        " reads each class. A field the caller's roles may not read is null with a FORBIDDEN error."
    ),
)
class Phi:
    class_: PhiClass = strawberry.directive_field(name="class")  # type: ignore[valid-type]
