"""A query operation → one SQL statement that returns the response's ``data`` as JSON text.

The walk follows graphql-core's own field collection (``collect_fields``/``collect_subfields``:
fragments, aliases, type conditions, ``@skip``/``@include``), so fields merge exactly as they do
on the interpreted path. What a field reads comes from :data:`hms.resolvers.fields.OBJECTS`;
what a connection's arguments mean — filter, order, page, cursors — from
:mod:`hms.resolvers.lists`, the same functions the resolvers call.

A :class:`Plan` is SQL text plus, for each ``$n``, a function of the request (its coerced
variables, principal, clock) that gives the value. A plan is valid for the *shape* it was
compiled for — which filter fields are set, which connections are anchored or read backwards,
the types of ids, the values of Boolean variables — and :meth:`Plan.bind` raises
:class:`Mismatch` for a request of another shape, so one plan serves every request of its shape.

Errors stay with the interpreted path. What the interpreted path would refuse (a bad id or
cursor, a page size out of range, a string past its limit) raises :class:`Deopt` while binding,
before any SQL; the one refusal only the data can reveal — a cursor whose row this hospital
cannot see — is checked by the statement itself, which then says so in its second column.
Anything the walk does not cover raises :class:`NotCovered`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from graphql import (
    GraphQLBoolean,
    GraphQLField,
    GraphQLObjectType,
    GraphQLSchema,
    OperationDefinitionNode,
    get_named_type,
)
from graphql.execution.collect_fields import (
    FieldDetailsList,
    FragmentDetails,
    collect_fields,
    collect_subfields,
)
from graphql.execution.values import VariableValues, get_argument_values

from hms.compiler import sql
from hms.persistence.queries import HOSPITAL, Condition
from hms.resolvers.errors import BadUserInput
from hms.resolvers.fields import OBJECTS, Children, Kind, Leaf, ObjectMap, ToOne
from hms.resolvers.lists import ROOT_LISTS, ListRequest, children_request, root_request
from hms.resolvers.relay import expect_global_id, from_global_id
from hms.resolvers.validation import MAX_MRN, bounded
from hms.security.policy import CONFIDENTIAL_CLASSES, FieldClass
from hms.settings import Settings

#: Days counted as "new" by patientStats (as hms.persistence.patients.stats counts them).
NEW_PATIENT_DAYS = 30
#: The Query fields the compiler translates (tests/unit/test_fields.py checks every field of
#: Query is here): the four root connections and these.
ROOT_FIELDS = frozenset(
    {*ROOT_LISTS, "patient", "patientByMrn", "node", "nodes", "viewer", "patientStats"}
)


#: The response key that carries it inside the statement's text: U+0001 is never part of a
#: GraphQL name, and in JSON text ``"\u0001":"`` can only open this key (a string value is
#: never followed by ':', and a quote inside a string is escaped).
AUDIT_KEY = "\x01"


class NotCovered(Exception):
    """The operation has a part the compiler does not translate: run it interpreted."""


class Deopt(Exception):
    """This request's values may make the interpreted path answer an error: run it there."""


class Mismatch(Exception):
    """This request has another shape than the plan was compiled for."""


@dataclasses.dataclass
class Binding:
    """What a plan's parameters are computed from, for one request."""

    variables: VariableValues
    hospital_id: uuid.UUID
    subject: str
    roles: list[str]
    now: dt.datetime
    settings: Settings
    memo: dict[int, Any] = dataclasses.field(default_factory=dict)
    #: For the audit event: the client application and the field classes the document reads.
    client: str | None = None
    field_classes: tuple[str, ...] = ()


Source = Callable[[Binding], Any]
#: A field's coerced GraphQL arguments -> the values its resolver receives (hms.schema.arguments).
Arguments = Callable[[GraphQLField, dict[str, Any]], dict[str, Any]]


Guard = Callable[[Binding], None]


@dataclasses.dataclass(frozen=True)
class Plan:
    """One SQL statement (returning ``data`` as text and an ``ok`` flag) and its parameters."""

    sql: str
    guards: tuple[Guard, ...]
    sources: tuple[Source, ...]
    #: The answer holds patients' data: its objects carry hidden keys naming their patients
    #: (:func:`hms.compiler.take_patients` takes them out), and the request is audited.
    touches: bool = False

    def bind(self, binding: Binding) -> list[Any]:
        """Parameter values for ``binding``: :class:`Mismatch` when it has another shape,
        :class:`Deopt` when the interpreted path should answer it."""
        for guard in self.guards:
            guard(binding)
        return [source(binding) for source in self.sources]


T = TypeVar("T")


def _deopt_on_bad_input(compute: Callable[[], T]) -> T:
    try:
        return compute()
    except BadUserInput:
        raise Deopt() from None


class _Compiler:
    def __init__(
        self,
        schema: GraphQLSchema,
        arguments: Arguments,
        fragments: dict[str, FragmentDetails],
        operation: OperationDefinitionNode,
        binding: Binding,
    ) -> None:
        self.schema = schema
        self.arguments = arguments
        self.fragments = fragments
        self.operation = operation
        self.binding = binding
        self.sources: list[Source] = []
        self.guards: list[Guard] = []
        self.aliases = 0
        self.anchors: list[str] = []  # SQL conditions that must hold, else run interpreted
        self._hospital: str | None = None
        self.touches = False  # some object of the answer is a patient's data
        # Inside a patient's own connections (its appointments, its encounters) the patient is
        # already named by the enclosing object: the children need no hidden key of their own.
        self.within_patient = 0
        # The document selects a field class a confidential record guards.
        self.guarded = not CONFIDENTIAL_CLASSES.isdisjoint(
            FieldClass(c) for c in binding.field_classes
        )

    @property
    def hospital(self) -> str:
        """The tenant's parameter, made on first use (an unused parameter has no type)."""
        if self._hospital is None:
            self._hospital = self.param(lambda b: b.hospital_id)
        return self._hospital

    # --- bookkeeping ------------------------------------------------------------------------

    def param(self, source: Source) -> str:
        self.sources.append(source)
        return f"${len(self.sources)}"

    def alias(self) -> str:
        self.aliases += 1
        return f"t{self.aliases}"

    def args(self, field: GraphQLField, details: FieldDetailsList) -> Callable[[Binding], Any]:
        """The field's coerced arguments for a binding (computed once per binding)."""
        node = details[0].node
        key = id(node)
        arguments = self.arguments  # not self: a plan must not keep the compiler (and its request)

        def at(b: Binding) -> Any:
            found = b.memo.get(key)
            if found is None:
                values = get_argument_values(field, node, b.variables)
                found = b.memo[key] = arguments(field, values)
            return found

        return at

    def guard(self, value: Source, expected: Any) -> None:
        """Bind only requests for which ``value`` equals what it was at compile time."""

        def check(b: Binding) -> None:
            if value(b) != expected:
                raise Mismatch()

        self.guards.append(check)

    # --- fields -----------------------------------------------------------------------------

    def subfields(
        self, parent: GraphQLObjectType, details: FieldDetailsList
    ) -> dict[str, FieldDetailsList]:
        collected = collect_subfields(
            self.schema,
            self.fragments,
            self.binding.variables,
            self.operation,
            parent,
            details,
        )
        return collected.grouped_field_set

    @staticmethod
    def key_ok(key: str) -> str:
        if len(key.encode()) > sql.MAX_IDENTIFIER_BYTES:
            raise NotCovered(f"response key longer than {sql.MAX_IDENTIFIER_BYTES} bytes")
        return key

    def root(self) -> str:
        query_type = self.schema.query_type
        assert query_type is not None
        collected = collect_fields(
            self.schema,
            self.fragments,
            self.binding.variables,
            query_type,
            self.operation,
        )
        pairs = []
        for key, details in collected.grouped_field_set.items():
            name = details[0].node.name.value
            if name == "__typename":
                pairs.append((self.key_ok(key), sql.text(query_type.name)))
                continue
            field = query_type.fields.get(name)
            if field is None:
                raise NotCovered(name)  # __schema, __type
            pairs.append((self.key_ok(key), self.root_field(name, field, details)))
        return sql.obj(pairs)

    def root_field(self, name: str, field: GraphQLField, details: FieldDetailsList) -> str:
        args = self.args(field, details)
        if name in ROOT_LISTS:
            spec = ROOT_LISTS[name]
            settings = self.binding.settings

            def request(b: Binding) -> ListRequest:
                return _deopt_on_bad_input(
                    lambda: root_request(settings, b.hospital_id, name, args(b))
                )

            return self.connection(field, details, spec.type_name, request, parent=None)
        if name == "patient":
            pk = self.param(
                lambda b: _deopt_on_bad_input(lambda: expect_global_id(args(b)["id"], "Patient"))
            )
            return self.one("Patient", field, details, f"{{t}}.id = {pk}")
        if name == "patientByMrn":
            mrn = self.param(
                lambda b: _deopt_on_bad_input(lambda: bounded("mrn", args(b)["mrn"], MAX_MRN))
            )
            return self.one("Patient", field, details, f"{{t}}.mrn = {mrn}")
        if name == "node":
            return self.node(field, details, lambda b: args(b)["id"])
        if name == "nodes":
            return self.nodes(field, details, args)
        if name == "viewer":
            return self.viewer(field, details)
        if name == "patientStats":
            return self.patient_stats(field, details)
        raise NotCovered(name)

    def node_type(self, global_id: Source) -> str:
        """The type of the id at compile time, guarded for every later binding."""
        try:
            type_name, _ = from_global_id(global_id(self.binding))
        except BadUserInput:
            raise Deopt() from None
        if type_name not in OBJECTS:
            # A node the compiler has no mapping for (a Report): this request runs interpreted,
            # while the document's plans for other types stay.
            raise Deopt()

        def type_of(b: Binding) -> str:
            try:
                return from_global_id(global_id(b))[0]
            except BadUserInput:
                raise Deopt() from None

        self.guard(type_of, type_name)
        return type_name

    def node(self, field: GraphQLField, details: FieldDetailsList, global_id: Source) -> str:
        type_name = self.node_type(global_id)
        pk = self.param(lambda b: from_global_id(global_id(b))[1])
        return self.one(type_name, field, details, f"{{t}}.id = {pk}")

    def nodes(
        self, field: GraphQLField, details: FieldDetailsList, args: Callable[[Binding], Any]
    ) -> str:
        ids = args(self.binding)["ids"]
        if len(ids) > self.binding.settings.max_page_size:
            raise Deopt()
        self.guard(lambda b: len(args(b)["ids"]), len(ids))
        items = [self.node(field, details, _item(args, i)) for i in range(len(ids))]
        if not items:
            return "'[]'::json"
        return f"array_to_json(ARRAY[{', '.join(items)}]::json[])"

    def one(
        self, type_name: str, field: GraphQLField, details: FieldDetailsList, where: str
    ) -> str:
        """The object of ``type_name`` matching ``where`` (``{t}`` is its alias), or null."""
        mapping = OBJECTS[type_name]
        graphql_type = self.schema.get_type(type_name)
        assert isinstance(graphql_type, GraphQLObjectType)
        t = self.alias()
        conditions = [where.format(t=t), *self.tenant(mapping, t)]
        body = self.object(type_name, graphql_type, details, t)
        return f"(SELECT {body} FROM {mapping.table.name} {t} WHERE {' AND '.join(conditions)})"

    def tenant(self, mapping: ObjectMap, t: str) -> list[str]:
        # The hospital table has no hospital_id: row-level security shows only the caller's.
        if "hospital_id" in mapping.table.c:
            return [f"{t}.hospital_id = {self.hospital}"]
        return []

    def object(
        self, type_name: str, graphql_type: GraphQLObjectType, details: FieldDetailsList, t: str
    ) -> str:
        """The JSON object of the row ``t`` of ``type_name`` for the selection in ``details``."""
        mapping = OBJECTS[type_name]
        pairs = []
        patient = mapping.patient
        if patient is not None and (type_name == "Patient" or not self.within_patient):
            # Whose data this object is, for the audit event: a hidden first key, taken out of
            # the answer before it leaves (hms.compiler.take_patients).
            named = f"{t}.{sql.ident(patient)}::text"
            if self.guarded and "confidential" in mapping.table.c:
                # A confidential record: marked, so the request runs interpreted, where each
                # guarded field checks the caller's emergency grants.
                named = f"CASE WHEN {t}.confidential THEN '!' ELSE '' END || {named}"
            pairs.append((AUDIT_KEY, named))
            self.touches = True
        for key, sub in self.subfields(graphql_type, details).items():
            name = sub[0].node.name.value
            if name == "__typename":
                pairs.append((self.key_ok(key), sql.text(type_name)))
                continue
            target = mapping.fields.get(name)
            if target is None:
                raise NotCovered(f"{type_name}.{name}")
            pairs.append(
                (self.key_ok(key), self.member(type_name, graphql_type, name, target, sub, t))
            )
        return sql.obj(pairs)

    def member(
        self,
        type_name: str,
        graphql_type: GraphQLObjectType,
        name: str,
        target: Any,
        details: FieldDetailsList,
        t: str,
    ) -> str:
        mapping = OBJECTS[type_name]
        if isinstance(target, Leaf):
            column = f"{t}.{sql.ident(mapping.table.c[target.column].name)}"
            if target.kind is Kind.NODE_ID:
                return sql.opaque(f"{type_name}:", column)
            if target.kind is Kind.ENUM:
                return sql.enum(column)
            if target.kind is Kind.DATETIME:
                return sql.instant(column)
            return column
        field = graphql_type.fields[name]
        if isinstance(target, ToOne):
            column = f"{t}.{sql.ident(mapping.table.c[target.column].name)}"
            return self.one(target.type_name, field, details, f"{{t}}.id = {column}")
        if isinstance(target, Children):
            args = self.args(field, details)
            settings = self.binding.settings
            children = target

            def request(b: Binding) -> ListRequest:
                return _deopt_on_bad_input(
                    lambda: children_request(settings, b.hospital_id, children, args(b))
                )

            parent = (children.parent_column, t)
            own = type_name == "Patient" and children.parent_column == "patient_id"
            self.within_patient += own
            try:
                return self.connection(field, details, children.type_name, request, parent=parent)
            finally:
                self.within_patient -= own
        raise NotCovered(f"{type_name}.{name}")

    # --- connections ------------------------------------------------------------------------

    def connection(
        self,
        field: GraphQLField,
        details: FieldDetailsList,
        type_name: str,
        request: Callable[[Binding], ListRequest],
        parent: tuple[str, str] | None,
    ) -> str:
        """A connection object: edges, pageInfo, totalCount, each only when selected."""
        key = id(details[0].node)

        def at(b: Binding) -> ListRequest:
            found = b.memo.get(-key)
            if found is None:
                found = b.memo[-key] = request(b)
            return found

        compiled = at(self.binding)
        shape = _shape(compiled)
        self.guard(lambda b: _shape(at(b)), shape)
        mapping = OBJECTS[type_name]
        node_type = self.schema.get_type(type_name)
        assert isinstance(node_type, GraphQLObjectType)
        connection_type = get_named_type(field.type)
        assert isinstance(connection_type, GraphQLObjectType)

        def where(t: str) -> list[str]:  # the set's conditions (the same for rows and count)
            conditions = self.tenant(mapping, t)
            for name in compiled.query.params:
                if name == HOSPITAL:
                    continue
                value = self.param(_filter_value(at, name))
                conditions.append(_condition(mapping, t, name, value))
            if parent is not None:
                column, parent_alias = parent
                conditions.append(f"{t}.{sql.ident(column)} = {parent_alias}.id")
            return conditions

        # The interpreted path reads the page whatever is selected, and refuses a cursor whose
        # row it cannot see: the statement checks that for every anchor.
        for forward in (True, False):
            if (compiled.page.after if forward else compiled.page.before) is not None:
                value = self.param(_anchor(at, forward))
                v = self.alias()
                self.anchors.append(
                    f"EXISTS (SELECT 1 FROM {mapping.table.name} {v}"
                    f" WHERE {v}.hospital_id = {self.hospital} AND {v}.id = {value})"
                )
        selected = self.subfields(connection_type, details)
        paged = any(sub[0].node.name.value in ("edges", "pageInfo") for sub in selected.values())
        p = self.alias()
        limit = self.param(lambda b: at(b).page.limit) if paged else ""
        pairs = []
        for key_, sub in selected.items():
            name = sub[0].node.name.value
            if name == "__typename":
                pairs.append((self.key_ok(key_), sql.text(connection_type.name)))
            elif name == "edges":
                edge_type = get_named_type(connection_type.fields["edges"].type)
                assert isinstance(edge_type, GraphQLObjectType)
                edge = self.edge(type_name, node_type, edge_type, sub, compiled, p)
                order = "DESC" if compiled.page.backward else "ASC"
                pairs.append(
                    (
                        self.key_ok(key_),
                        f"coalesce(array_to_json(array_agg({edge} ORDER BY {p}.__n {order})"
                        f" FILTER (WHERE {p}.__n <= {limit})), '[]'::json)",
                    )
                )
            elif name == "pageInfo":
                info_type = get_named_type(connection_type.fields["pageInfo"].type)
                assert isinstance(info_type, GraphQLObjectType)
                info = self.page_info(info_type, sub, compiled, p, limit)
                pairs.append((self.key_ok(key_), info))
            elif name == "totalCount":
                t = self.alias()
                table = mapping.table.name
                pairs.append(
                    (
                        self.key_ok(key_),
                        f"(SELECT count(*) FROM {table} {t} WHERE {' AND '.join(where(t))})",
                    )
                )
            else:
                raise NotCovered(f"{connection_type.name}.{name}")
        body = sql.obj(pairs)
        if not paged:
            return body
        rows = self.page(mapping, compiled, at, where, limit)
        # GROUP BY (): exactly one row, also when the page is empty or nothing selected
        # aggregates over it (every reference to the rows is inside an aggregate).
        return f"(SELECT {body} FROM ({rows}) {p} GROUP BY ())"

    def page(
        self,
        mapping: ObjectMap,
        compiled: ListRequest,
        at: Callable[[Binding], ListRequest],
        where: Callable[[str], list[str]],
        limit: str,
    ) -> str:
        """The page rows (with the look-ahead row), numbered in fetch order as ``__n``."""
        t = self.alias()
        conditions = where(t)
        key = compiled.key
        page = compiled.page
        table = mapping.table.name
        columns = [sql.ident(c.name) for c in key.columns]
        for anchor, forward in ((page.after, True), (page.before, False)):
            if anchor is None:
                continue
            value = self.param(_anchor(at, forward))
            a = self.alias()
            row = ", ".join(f"{t}.{c}" for c in columns)
            other = ", ".join(f"{a}.{c}" for c in columns)
            op = ">" if forward != key.descending else "<"
            conditions.append(
                f"({row}) {op} (SELECT {other} FROM {table} {a}"
                f" WHERE {a}.hospital_id = {self.hospital} AND {a}.id = {value})"
            )
        descending = key.descending != page.backward
        order = ", ".join(f"{t}.{c} {'DESC' if descending else 'ASC'}" for c in columns)
        return (
            f"SELECT {t}.*, row_number() OVER (ORDER BY {order}) AS __n FROM {table} {t}"
            f" WHERE {' AND '.join(conditions)} ORDER BY {order} LIMIT {limit} + 1"
        )

    def edge(
        self,
        type_name: str,
        node_type: GraphQLObjectType,
        edge_type: GraphQLObjectType,
        details: FieldDetailsList,
        compiled: ListRequest,
        p: str,
    ) -> str:
        pairs = []
        for key, sub in self.subfields(edge_type, details).items():
            name = sub[0].node.name.value
            if name == "__typename":
                pairs.append((self.key_ok(key), sql.text(edge_type.name)))
            elif name == "cursor":
                pairs.append((self.key_ok(key), self.cursor(compiled, p)))
            elif name == "node":
                pairs.append((self.key_ok(key), self.object(type_name, node_type, sub, p)))
            else:
                raise NotCovered(f"{edge_type.name}.{name}")
        return sql.obj(pairs)

    @staticmethod
    def cursor(compiled: ListRequest, t: str) -> str:
        return sql.opaque(compiled.codec._prefix, f"{t}.id")

    def page_info(
        self,
        info_type: GraphQLObjectType,
        details: FieldDetailsList,
        compiled: ListRequest,
        p: str,
        limit: str,
    ) -> str:
        page = compiled.page
        more = f"(count({p}.__n) > {limit})"  # an outer aggregate: over the page rows
        kept = f"FILTER (WHERE {p}.__n <= {limit})"
        cursor = self.cursor(compiled, p)
        first = f"(array_agg({cursor} ORDER BY {p}.__n ASC) {kept})[1]"
        last = f"(array_agg({cursor} ORDER BY {p}.__n DESC) {kept})[1]"
        values = {
            "hasNextPage": ("true" if page.before is not None else "false")
            if page.backward
            else more,
            "hasPreviousPage": more
            if page.backward
            else ("true" if page.after is not None else "false"),
            "startCursor": last if page.backward else first,
            "endCursor": first if page.backward else last,
            "__typename": sql.text(info_type.name),
        }
        pairs = []
        for key, sub in self.subfields(info_type, details).items():
            name = sub[0].node.name.value
            if name not in values:
                raise NotCovered(f"PageInfo.{name}")
            pairs.append((self.key_ok(key), values[name]))
        return sql.obj(pairs)

    # --- the root objects that are not rows -------------------------------------------------

    def viewer(self, field: GraphQLField, details: FieldDetailsList) -> str:
        viewer_type = get_named_type(field.type)
        assert isinstance(viewer_type, GraphQLObjectType)
        pairs = []
        for key, sub in self.subfields(viewer_type, details).items():
            name = sub[0].node.name.value
            if name == "__typename":
                value = sql.text(viewer_type.name)
            elif name == "userId":
                value = f"{self.param(lambda b: b.subject)}::text"
            elif name == "roles":
                value = f"to_json({self.param(lambda b: b.roles)}::text[])"
            elif name == "hospital":
                value = self.one(
                    "Hospital", viewer_type.fields[name], sub, f"{{t}}.id = {self.hospital}"
                )
            else:
                raise NotCovered(f"Viewer.{name}")
            pairs.append((self.key_ok(key), value))
        return sql.obj(pairs)

    def patient_stats(self, field: GraphQLField, details: FieldDetailsList) -> str:
        stats_type = get_named_type(field.type)
        assert isinstance(stats_type, GraphQLObjectType)
        t = self.alias()

        def new_patients() -> str:
            since = self.param(lambda b: b.now - dt.timedelta(days=NEW_PATIENT_DAYS))
            return f"count(*) FILTER (WHERE {t}.created_at >= {since})"

        values: dict[str, Callable[[], str]] = {
            "total": lambda: "count(*)",
            "active": lambda: f"count(*) FILTER (WHERE {t}.active)",
            "newLast30Days": new_patients,
            "__typename": lambda: sql.text(stats_type.name),
        }
        columns = []
        for key, sub in self.subfields(stats_type, details).items():
            name = sub[0].node.name.value
            if name not in values:
                raise NotCovered(f"PatientStats.{name}")
            columns.append(f"{values[name]()} AS {sql.ident(self.key_ok(key))}")
        if not columns:
            return "'{}'::json"
        return (
            f"(SELECT row_to_json(o) FROM (SELECT {', '.join(columns)} FROM patient {t}"
            f" WHERE {t}.hospital_id = {self.hospital}) o)"
        )


def _item(args: Callable[[Binding], Any], i: int) -> Source:
    return lambda b: args(b)["ids"][i]


def _filter_value(at: Callable[[Binding], ListRequest], name: str) -> Source:
    return lambda b: at(b).query.params[name]


def _anchor(at: Callable[[Binding], ListRequest], after: bool) -> Source:
    return lambda b: at(b).page.after if after else at(b).page.before


def _shape(request: ListRequest) -> tuple[Any, ...]:
    """What a connection's SQL depends on: the filter shape, the order, the page's anchors."""
    page = request.page
    return (
        id(request.query.stmt),
        request.key,
        request.codec._prefix,
        page.after is not None,
        page.before is not None,
        page.backward,
    )


def _condition(mapping: ObjectMap, t: str, name: str, value: str) -> str:
    """The SQL of a filter condition of ``mapping``'s Filtered, rendered for alias ``t``."""
    condition = _conditions(mapping)[name]
    columns = [f"{t}.{sql.ident(mapping.table.c[c].name)}" for c in condition.columns]
    if condition.op in (">=", "<", "="):
        return f"{columns[0]} {condition.op} {value}"
    if condition.op == "any":
        return f"{columns[0]} = ANY({value})"
    if condition.op == "prefix":
        return "(" + " OR ".join(f"{c} ILIKE {value} ESCAPE '\\'" for c in columns) + ")"
    raise NotCovered(condition.op)


def _conditions(mapping: ObjectMap) -> dict[str, Condition]:
    for spec in ROOT_LISTS.values():
        if spec.filtered.table is mapping.table:
            return spec.filtered.conditions
    raise NotCovered(mapping.table.name)


def compile_plan(
    schema: GraphQLSchema,
    arguments: Arguments,
    fragments: dict[str, FragmentDetails],
    operation: OperationDefinitionNode,
    binding: Binding,
) -> Plan:
    """Compile ``operation`` for the shape of ``binding``; raises NotCovered or Deopt."""
    compiler = _Compiler(schema, arguments, fragments, operation, binding)
    try:
        data = compiler.root()
        ok = " AND ".join(compiler.anchors) or "true"
        booleans = _boolean_variables(operation)
        if booleans:
            expected = tuple(binding.variables.coerced.get(name) for name in booleans)
            compiler.guard(
                lambda b: tuple(b.variables.coerced.get(name) for name in booleans), expected
            )
        return Plan(
            f"SELECT ({data})::text AS data, ({ok}) AS ok",
            tuple(compiler.guards),
            tuple(compiler.sources),
            touches=compiler.touches,
        )
    finally:
        # The compiler holds the parameter functions; none of them holds the compiler.
        compiler.sources.clear()
        compiler.guards.clear()


def _boolean_variables(operation: OperationDefinitionNode) -> list[str]:
    """Variables of type Boolean: they can switch @skip/@include, so they shape the plan."""
    names = []
    for definition in operation.variable_definitions or ():
        type_node = definition.type
        named = getattr(type_node, "type", type_node)
        if getattr(getattr(named, "name", None), "value", None) == GraphQLBoolean.name:
            names.append(definition.variable.name.value)
    return names
