"""Read statements built once per shape; a request only binds its values.

Building a SQLAlchemy statement per request is not free: a derived table (the LATERAL of a
nested page) and its column proxies refer to each other, so each statement built left ~400
objects in reference cycles for the garbage collector, and the collections that reclaimed them
were the long pauses of the read path. Here a statement depends only on its *shape* — which
filter fields are set, which order, whether the page has an ``after``/``before`` anchor — and is
built the first time that shape is asked for; every value (the tenant, filter values, ids,
limits) is a bind parameter. A shape is a handful of booleans, so the caches stay small.

Lists of keys are bound as one array (``id = ANY(:ids)``), never expanded into one parameter
per item, so the statement text does not change with their length (and asyncpg prepares it
once per connection).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, Text, any_, bindparam, or_, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import KeyedColumnElement

#: Every read binds its tenant under this name.
HOSPITAL = "hospital_id"


@dataclasses.dataclass(frozen=True)
class Query:
    """A statement (shared, built once per shape) and the values of one request."""

    stmt: Select[Any]
    params: Mapping[str, Any]


def keys_in(column: KeyedColumnElement[Any], name: str) -> ColumnElement[bool]:
    """``column = ANY(:name)``: one array parameter whatever the number of keys."""
    return column == any_(bindparam(name, type_=ARRAY(column.type)))


@dataclasses.dataclass(frozen=True)
class Condition:
    """One filter condition, as data: SQLAlchemy (the interpreted path) and the compiler both
    render it, so the two paths cannot filter differently.

    ``op`` is one of ``>=``, ``<``, ``=`` (a column against the value), ``any`` (the column is one
    of a list) or ``prefix`` (a case-insensitive prefix of any of ``columns``; the value becomes
    a LIKE pattern, see :func:`prefix_pattern`). ``columns`` are column keys of the table.
    """

    op: str
    columns: tuple[str, ...]

    def expression(self, table: Table, name: str) -> ColumnElement[bool]:
        column = table.c[self.columns[0]]
        if self.op == ">=":
            return column >= bindparam(name)
        if self.op == "<":
            return column < bindparam(name)
        if self.op == "=":
            return column == bindparam(name)
        if self.op == "any":
            return keys_in(column, name)
        if self.op == "prefix":
            pattern = bindparam(name, type_=Text)
            return or_(*(table.c[c].ilike(pattern, escape="\\") for c in self.columns))
        raise ValueError(f"unknown condition {self.op!r}")

    def value(self, given: Any) -> Any:
        """The parameter's value for a filter field's value; None means no condition."""
        if self.op == "any":
            return list(given)
        if self.op == "prefix":
            return prefix_pattern(given)
        return given


def gte(column: str) -> Condition:
    return Condition(">=", (column,))


def lt(column: str) -> Condition:
    return Condition("<", (column,))


def eq(column: str) -> Condition:
    return Condition("=", (column,))


def one_of(column: str) -> Condition:
    return Condition("any", (column,))


def prefix(*columns: str) -> Condition:
    return Condition("prefix", columns)


def prefix_pattern(text: str) -> str | None:
    """The LIKE pattern of a prefix (wildcards in it are literal); None for no condition."""
    if not text:
        return None
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class Filtered:
    """``SELECT columns FROM table WHERE hospital_id = :hospital_id AND <the conditions set>``.

    ``conditions`` maps a filter field (an attribute of the filter dataclass) to its
    :class:`Condition`; the condition's bind parameter has the field's name.
    """

    def __init__(
        self,
        table: Table,
        columns: tuple[KeyedColumnElement[Any], ...],
        conditions: Mapping[str, Condition],
    ) -> None:
        self.table = table
        self.columns = columns
        self.conditions = dict(conditions)
        self.scoped = select(*columns).where(table.c.hospital_id == bindparam(HOSPITAL))
        self._shapes: dict[tuple[str, ...], Select[Any]] = {}

    def values(self, values: Any) -> dict[str, Any]:
        """Parameter values of the conditions that ``values`` (a filter dataclass) sets."""
        given = {} if values is None else vars(values)
        params: dict[str, Any] = {}
        for name, condition in self.conditions.items():
            value = given.get(name)
            if value is not None:
                value = condition.value(value)
            if value is not None:
                params[name] = value
        return params

    def query(self, hospital_id: Any, values: Any = None) -> Query:
        """The statement for the fields of ``values`` (a filter dataclass or None) that are set."""
        params = self.values(values)
        shape = tuple(params)
        stmt = self._shapes.get(shape)
        if stmt is None:
            stmt = self.scoped.where(
                *(self.conditions[name].expression(self.table, name) for name in shape)
            )
            self._shapes[shape] = stmt
        return Query(stmt, {HOSPITAL: hospital_id, **params})

    @functools.cache  # noqa: B019  # one per (Filtered, column); both live as long as the module
    def by(self, column: str) -> Select[Any]:
        """Rows whose ``column`` is any of ``:keys``, in the tenant."""
        return self.scoped.where(keys_in(self.table.c[column], "keys"))
