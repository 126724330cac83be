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
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, any_, bindparam, select
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


class Filtered:
    """``SELECT columns FROM table WHERE hospital_id = :hospital_id AND <the conditions set>``.

    ``conditions`` maps a filter field to its condition, written with a bind parameter of the
    same name; ``convert`` turns a field's value into that parameter's value where they differ
    (a name prefix becomes a LIKE pattern), or into None when the value means "no condition".
    """

    def __init__(
        self,
        table: Table,
        columns: tuple[KeyedColumnElement[Any], ...],
        conditions: Mapping[str, ColumnElement[bool]],
        convert: Mapping[str, Callable[[Any], Any]] | None = None,
    ) -> None:
        self.table = table
        self.columns = columns
        self.conditions = dict(conditions)
        self.convert = dict(convert or {})
        self.scoped = select(*columns).where(table.c.hospital_id == bindparam(HOSPITAL))
        self._shapes: dict[tuple[str, ...], Select[Any]] = {}

    def query(self, hospital_id: Any, values: Any = None) -> Query:
        """The statement for the fields of ``values`` (a filter dataclass or None) that are set."""
        given = {} if values is None else vars(values)
        params: dict[str, Any] = {HOSPITAL: hospital_id}
        for name in self.conditions:
            value = given.get(name)
            if value is not None:
                value = self.convert.get(name, _same)(value)
            if value is not None:
                params[name] = value
        shape = tuple(name for name in self.conditions if name in params)
        stmt = self._shapes.get(shape)
        if stmt is None:
            stmt = self.scoped.where(*(self.conditions[name] for name in shape))
            self._shapes[shape] = stmt
        return Query(stmt, params)

    @functools.cache  # noqa: B019  # one per (Filtered, column); both live as long as the module
    def by(self, column: str) -> Select[Any]:
        """Rows whose ``column`` is any of ``:keys``, in the tenant."""
        return self.scoped.where(keys_in(self.table.c[column], "keys"))


def _same(value: Any) -> Any:
    return value
