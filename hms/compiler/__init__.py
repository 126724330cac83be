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
from collections.abc import Callable, Mapping
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
from hms.security.policy import FieldClass, selected_classes
from hms.settings import Settings

__all__ = ["Compiled", "Compiler", "Plan", "take_patients"]

#: Plans kept per document and operation (one per request shape seen).
VARIANTS = 8


@dataclasses.dataclass(frozen=True)
class Compiled:
    sql: str
    params: list[Any]
    #: The answer names the patients it holds (hidden keys): see :func:`take_patients`.
    touches: bool = False


#: How the hidden key of each patient's object starts in the statement's JSON text.
_HIDDEN = '"\\u0001":"'


def take_patients(data: str) -> tuple[str, set[uuid.UUID], bool]:
    """The answer without its hidden keys, the patients they named, and whether one of them
    is a confidential record whose guarded fields the document selects.

    Each object of a patient's data starts with ``"\u0001":"<uuid>"`` (``"!<uuid>"`` for such
    a confidential record) and then a comma or its closing brace; plain string splitting takes
    them out (PostgreSQL's regular expressions cost milliseconds on a dashboard's answer, this
    a few microseconds).
    """
    parts = data.split(_HIDDEN)
    if len(parts) == 1:
        return data, set(), False
    kept = [parts[0]]
    named = set()
    confidential = False
    for part in parts[1:]:
        if part[:1] == "!":
            confidential = True
            part = part[1:]
        named.add(part[:36])
        rest = part[37:]  # past the uuid and its closing quote
        kept.append(rest[1:] if rest[:1] == "," else rest)
    return "".join(kept), {uuid.UUID(pk) for pk in named}, confidential


class Compiler:
    def __init__(
        self,
        schema: GraphQLSchema,
        arguments: Arguments,
        settings: Settings,
        *,
        classes: Mapping[tuple[str, str], FieldClass] | None = None,
        size: int = 1024,
        count: Callable[[str], None] = lambda result: None,
    ) -> None:
        self.count = count  # "hit" or "miss" of the plan cache, for metrics
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
        client: str | None = None,
    ) -> Compiled | None:
        """The statement and its values for this request, or None to run it interpreted.

        ``readable`` are the field classes the caller may read: a document that selects any
        other is left to the interpreted path.
        """
        key = (id(document), operation.name.value if operation.name else None)
        entry = self._plans.get(key)
        if entry is None:
            entry = _Entry(
                document, [], selected_classes(self.schema, self.classes, document, operation)
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
        binding = Binding(
            coerced,
            hospital_id,
            subject,
            roles,
            now,
            self.settings,
            client=client,
            field_classes=tuple(sorted(c.value for c in entry.classes)),
        )
        variants = entry.plans
        for plan in variants:
            try:
                compiled = Compiled(plan.sql, plan.bind(binding), plan.touches)
            except Mismatch:
                continue
            except Deopt:
                return None
            self.count("hit")
            return compiled
        self.count("miss")
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
        return Compiled(plan.sql, params, plan.touches)

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


def _fragments(document: DocumentNode) -> dict[str, FragmentDetails]:
    fragments = {}
    for definition in document.definitions:
        if isinstance(definition, FragmentDefinitionNode):
            if definition.variable_definitions:
                raise NotCovered("fragment variables")
            fragments[definition.name.value] = FragmentDetails(definition)
    return fragments
