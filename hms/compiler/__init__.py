"""Compiled reads: a query operation becomes one SQL statement that returns the response JSON.

:class:`Compiler` keeps the plans of recent documents (a bounded LRU per worker), several
variants per document when requests of different shapes use it, and answers for each request
either the SQL and its parameter values, or None: the interpreted path then runs it. See
:mod:`hms.compiler.compile` for what a plan is and when a request is left to the interpreted
path.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from graphql import (
    DocumentNode,
    FragmentDefinitionNode,
    GraphQLSchema,
    OperationDefinitionNode,
)
from graphql.execution.collect_fields import FragmentDetails
from graphql.execution.values import get_variable_values

from hms.compiler.compile import (
    Arguments,
    Binding,
    Deopt,
    Mismatch,
    NotCovered,
    Plan,
    compile_plan,
)
from hms.settings import Settings

__all__ = ["Compiled", "Compiler", "Plan"]

#: Plans kept per document and operation (one per request shape seen).
VARIANTS = 8


@dataclasses.dataclass(frozen=True)
class Compiled:
    sql: str
    params: list[Any]


class Compiler:
    def __init__(
        self, schema: GraphQLSchema, arguments: Arguments, settings: Settings, *, size: int = 1024
    ) -> None:
        self.schema = schema
        self.arguments = arguments
        self.settings = settings
        self.size = size
        # (id of the document, operation) -> (the document, its plans, or None: not covered).
        # The entry holds the document, so its id cannot be reused while the entry lives.
        self._plans: OrderedDict[tuple[int, str | None], tuple[DocumentNode, list[Plan] | None]]
        self._plans = OrderedDict()

    def prepare(
        self,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        variables: Mapping[str, Any] | None,
        *,
        hospital_id: uuid.UUID,
        subject: str,
        roles: list[str],
        now: dt.datetime,
    ) -> Compiled | None:
        """The statement and its values for this request, or None to run it interpreted."""
        coerced = get_variable_values(
            self.schema, operation.variable_definitions or (), dict(variables or {})
        )
        if isinstance(coerced, list):
            return None  # the interpreted path reports coercion errors
        binding = Binding(coerced, hospital_id, subject, roles, now, self.settings)
        key = (id(document), operation.name.value if operation.name else None)
        entry = self._plans.get(key)
        variants: list[Plan] = []
        if entry is not None:
            if entry[1] is None:
                return None  # not covered
            variants = entry[1]
            self._plans.move_to_end(key)
        for plan in variants:
            try:
                return Compiled(plan.sql, plan.bind(binding))
            except Mismatch:
                continue
            except Deopt:
                return None
        try:
            fragments = _fragments(document)
            plan = compile_plan(self.schema, self.arguments, fragments, operation, binding)
            params = plan.bind(binding)
        except NotCovered:
            self._remember(key, document, None)
            return None
        except Deopt:
            return None
        self._remember(key, document, [plan, *variants][:VARIANTS])
        return Compiled(plan.sql, params)

    def _remember(
        self, key: tuple[int, str | None], document: DocumentNode, plans: list[Plan] | None
    ) -> None:
        self._plans[key] = (document, plans)
        self._plans.move_to_end(key)
        while len(self._plans) > self.size:
            self._plans.popitem(last=False)


def _fragments(document: DocumentNode) -> dict[str, FragmentDetails]:
    fragments = {}
    for definition in document.definitions:
        if isinstance(definition, FragmentDefinitionNode):
            if definition.variable_definitions:
                raise NotCovered("fragment variables")
            fragments[definition.name.value] = FragmentDetails(definition)
    return fragments
