"""Bounds on what a request may carry, checked before anything runs.

Every string and list a client sends, whether written into the document or passed as a
variable, is checked here once: no NUL character (PostgreSQL text cannot hold U+0000 and the
driver would fail with an internal error), no string longer than :data:`MAX_STRING_CHARS`, no
list longer than :data:`MAX_LIST_ITEMS` (a 40,000-item status list would reach the driver's
32,767-parameter limit). Fields with tighter rules (an MRN, a name prefix) check those where
they are read; these are the floor under every field, so no input reaches SQL unbounded.

Messages name the argument or variable path and never echo the value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graphql import (
    ArgumentNode,
    GraphQLError,
    ListValueNode,
    ObjectFieldNode,
    StringValueNode,
    ValidationRule,
)

#: The longest string any input may carry; tighter per-field limits apply on top.
MAX_STRING_CHARS = 10_000
#: The most items any list input may carry (``nodes(ids:)``, status lists, ...).
MAX_LIST_ITEMS = 100

NUL = "\x00"


class InputLimitError(ValueError):
    """A variable breaks a bound; ``str(error)`` names where, safe to show the client."""


def _string_problem(value: str) -> str | None:
    if NUL in value:
        return "must not contain the NUL character (U+0000)"
    if len(value) > MAX_STRING_CHARS:
        return f"must be at most {MAX_STRING_CHARS} characters"
    return None


def _list_problem(length: int) -> str | None:
    if length > MAX_LIST_ITEMS:
        return f"must have at most {MAX_LIST_ITEMS} items, got {length}"
    return None


def check_variables(variables: Mapping[str, Any]) -> None:
    """Raise :class:`InputLimitError` for the first variable value that breaks a bound.

    Runs on the raw JSON before coercion, so it also covers values the schema would coerce
    (an ID, an enum) and keys of input objects.
    """
    stack: list[tuple[str, Any]] = [(f"${name}", value) for name, value in variables.items()]
    while stack:
        where, value = stack.pop()
        problem = None
        if isinstance(value, str):
            problem = _string_problem(value)
        elif isinstance(value, list):
            problem = _list_problem(len(value))
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(value))
        elif isinstance(value, dict):
            for key, item in value.items():
                if NUL in key or len(key) > MAX_STRING_CHARS:
                    problem = "has a field name that is not allowed"
                    break
                stack.append((f"{where}.{key}", item))
        if problem is not None:
            raise InputLimitError(f"Variable '{where}' {problem}")


class InputLimitsRule(ValidationRule):
    """The same bounds for values written into the document itself (literals)."""

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.path: list[str] = []

    def enter_argument(self, node: ArgumentNode, *_args: Any) -> None:
        self.path.append(node.name.value)

    def leave_argument(self, node: ArgumentNode, *_args: Any) -> None:
        self.path.pop()

    def enter_object_field(self, node: ObjectFieldNode, *_args: Any) -> None:
        self.path.append(node.name.value)

    def leave_object_field(self, node: ObjectFieldNode, *_args: Any) -> None:
        self.path.pop()

    def _report(self, node: Any, problem: str) -> None:
        where = ".".join(self.path) or "value"
        self.report_error(GraphQLError(f"Argument '{where}' {problem}", node))

    def enter_string_value(self, node: StringValueNode, *_args: Any) -> None:
        problem = _string_problem(node.value)
        if problem is not None:
            self._report(node, problem)

    def enter_list_value(self, node: ListValueNode, *_args: Any) -> None:
        problem = _list_problem(len(node.values))
        if problem is not None:
            self._report(node, problem)
