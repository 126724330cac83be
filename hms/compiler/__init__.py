"""Compiled reads: a query operation becomes one SQL statement that returns the response JSON.

:class:`Compiler` keeps the plans of recent documents (a bounded LRU per worker), several
variants per document when requests of different shapes use it, and answers for each request
either the SQL and its parameter values, or None: the interpreted path then runs it. See
:mod:`hms.compiler.compile` for what a plan is and when a request is left to the interpreted
path. A document that selects a field the caller's roles may not read (:mod:`hms.security.policy`)
is left to the interpreted path too, which answers such a field with null and a ``FORBIDDEN``
error on its exact path.
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
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_named_type,
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
from hms.security.policy import FieldClass
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
        self,
        schema: GraphQLSchema,
        arguments: Arguments,
        settings: Settings,
        *,
        classes: Mapping[tuple[str, str], FieldClass] | None = None,
        size: int = 1024,
    ) -> None:
        self.schema = schema
        self.arguments = arguments
        self.settings = settings
        self.classes = dict(classes or {})
        self.size = size
        # (id of the document, operation) -> the document, its plans (None: not covered) and
        # the field classes it selects. The entry holds the document, so its id cannot be
        # reused while the entry lives.
        self._plans: OrderedDict[tuple[int, str | None], _Entry] = OrderedDict()

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
        readable: frozenset[FieldClass] = frozenset(FieldClass),
    ) -> Compiled | None:
        """The statement and its values for this request, or None to run it interpreted.

        ``readable`` are the field classes the caller may read: a document that selects any
        other is left to the interpreted path.
        """
        key = (id(document), operation.name.value if operation.name else None)
        entry = self._plans.get(key)
        if entry is None:
            entry = _Entry(
                document, [], _selected_classes(self.schema, self.classes, document, operation)
            )
            self._remember(key, entry)
        else:
            self._plans.move_to_end(key)
        if not entry.classes <= readable:
            return None
        if entry.plans is None:
            return None  # not covered
        coerced = get_variable_values(
            self.schema, operation.variable_definitions or (), dict(variables or {})
        )
        if isinstance(coerced, list):
            return None  # the interpreted path reports coercion errors
        binding = Binding(coerced, hospital_id, subject, roles, now, self.settings)
        variants = entry.plans
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
            entry.plans = None
            return None
        except Deopt:
            return None
        entry.plans = [plan, *variants][:VARIANTS]
        return Compiled(plan.sql, params)

    def _remember(self, key: tuple[int, str | None], entry: _Entry) -> None:
        self._plans[key] = entry
        self._plans.move_to_end(key)
        while len(self._plans) > self.size:
            self._plans.popitem(last=False)


@dataclasses.dataclass
class _Entry:
    document: DocumentNode
    plans: list[Plan] | None
    classes: frozenset[FieldClass]


def _selected_classes(
    schema: GraphQLSchema,
    classes: Mapping[tuple[str, str], FieldClass],
    document: DocumentNode,
    operation: OperationDefinitionNode,
) -> frozenset[FieldClass]:
    """Every field class the operation could read, wherever a field sits (fragments included,
    ``@skip``/``@include`` ignored: a class that might be read counts)."""
    if not classes:
        return frozenset()
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    found: set[FieldClass] = set()
    walked: set[str] = set()

    def walk(selections: SelectionSetNode, parent: object) -> None:
        if not isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            return
        owners = [parent.name]
        if isinstance(parent, GraphQLInterfaceType):
            owners += [t.name for t in schema.get_implementations(parent).objects]
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                name = selection.name.value
                found.update(c for o in owners if (c := classes.get((o, name))) is not None)
                field = parent.fields.get(name)
                if field is not None and selection.selection_set is not None:
                    walk(selection.selection_set, get_named_type(field.type))
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = parent if condition is None else schema.get_type(condition.name.value)
                walk(selection.selection_set, target)
            elif isinstance(selection, FragmentSpreadNode):
                spread = fragments.get(selection.name.value)
                if spread is not None and spread.name.value not in walked:
                    walked.add(spread.name.value)
                    walk(spread.selection_set, schema.get_type(spread.type_condition.name.value))

    root = schema.get_root_type(operation.operation)
    walk(operation.selection_set, root)
    return frozenset(found)


def _fragments(document: DocumentNode) -> dict[str, FragmentDetails]:
    fragments = {}
    for definition in document.definitions:
        if isinstance(definition, FragmentDefinitionNode):
            if definition.variable_definitions:
                raise NotCovered("fragment variables")
            fragments[definition.name.value] = FragmentDetails(definition)
    return fragments
