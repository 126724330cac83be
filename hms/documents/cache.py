"""Parsed and validated documents, cached by query text (parse + validate cost milliseconds)."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from graphql import (
    ASTValidationRule,
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    parse,
    specified_rules,
    validate,
)
from graphql.validation import NoSchemaIntrospectionCustomRule

from hms.documents.caching import max_age


@dataclasses.dataclass(frozen=True)
class Document:
    """A query text after parsing and validation; ``errors`` non-empty means it cannot run."""

    ast: DocumentNode | None
    errors: tuple[GraphQLError, ...]
    #: Seconds a client may keep the answer (hms.documents.caching), None: not at all.
    max_age: int | None = None
    #: Operation name -> what the pipeline derived from it once (the field classes it reads).
    derived: dict[str | None, Any] = dataclasses.field(default_factory=dict, compare=False)

    def operation(self, name: str | None) -> OperationDefinitionNode | None:
        if self.ast is None:
            return None
        operations = [d for d in self.ast.definitions if isinstance(d, OperationDefinitionNode)]
        if name is None:
            return operations[0] if len(operations) == 1 else None
        return next((op for op in operations if op.name and op.name.value == name), None)


class DocumentCache:
    """A bounded LRU of :class:`Document` by query text, for one schema and one rule set."""

    def __init__(
        self,
        schema: GraphQLSchema,
        *,
        size: int,
        introspection: bool,
        max_tokens: int,
        extra_rules: Sequence[type[ASTValidationRule]] = (),
        count: Callable[[str], None] = lambda result: None,
    ) -> None:
        self.schema = schema
        self.count = count  # "hit" or "miss", for metrics
        self.size = size
        self.max_tokens = max_tokens
        rules: list[type[ASTValidationRule]] = [*specified_rules, *extra_rules]
        if not introspection:
            rules.append(NoSchemaIntrospectionCustomRule)
        self.rules: Sequence[type[ASTValidationRule]] = rules
        # Without introspection, "Did you mean ...?" would map the schema field by field.
        self.hide_suggestions = not introspection
        self._items: OrderedDict[str, Document] = OrderedDict()

    def get(self, query: str) -> Document:
        document = self._items.get(query)
        if document is not None:
            self._items.move_to_end(query)
            self.count("hit")
            return document
        self.count("miss")
        document = self._build(query)
        self._items[query] = document
        if len(self._items) > self.size:
            self._items.popitem(last=False)
        return document

    def _build(self, query: str) -> Document:
        try:
            # The token cap stops a huge document before it costs parse time and memory.
            ast = parse(query, max_tokens=self.max_tokens, allow_empty_selection_sets=False)
        except GraphQLError as error:
            return Document(None, (error,))
        errors = validate(self.schema, ast, self.rules, hide_suggestions=self.hide_suggestions)
        if errors:
            return Document(ast, tuple(errors))
        return Document(ast, (), max_age(self.schema, ast))
