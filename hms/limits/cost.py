"""What an operation may cost, worked out before it runs, and what it really cost (issue 9).

The model is the IBM GraphQL Cost Directive one, with the directives on the schema itself (and
so in ``schema.graphql``): ``@cost(weight)`` and ``@listSize(assumedSize, slicingArguments,
sizedFields)``. For a field selected in an operation::

    cost(field) = n * (weight + sum of cost(subfield))

- ``weight``: ``@cost`` on the field definition, else 1 for a field of object, interface or
  union type and 0 for scalars and enums; a mutation field with no ``@cost`` weighs
  :data:`MUTATION_WEIGHT`.
- ``n``: 1, except for list fields: the value of the field's slicing argument (an ``Int``
  argument's value, a list argument's length; a value above the page limit counts as the
  limit, since it is refused before anything is read), else its ``assumedSize``; a list named
  in ``sizedFields`` of the enclosing connection gets that connection's size, so
  ``patients(first: 50) { edges { node … } }`` is fifty nodes.
- A field of abstract type costs as its most expensive possible type.
- ``__schema`` and ``__type`` cost a fixed :data:`INTROSPECTION` each and are not walked;
  ``__typename`` costs nothing.

Fields are collected exactly as the executor collects them (graphql-core's
``collect_fields``/``collect_subfields``): a field selected twice through overlapping
fragments is one field, a spread counts where its type condition applies, ``@skip`` and
``@include`` follow the variables.

The walk happens once per document, operation and set of Boolean variable values (the only
variables that change which fields are collected); it yields a :class:`Formula` that the
sizes are plugged into per request in microseconds. The formula also gives the *actual* cost
of an answer — the same weights, counted where they appear in what came back
(:meth:`Formula.actual`, :meth:`Formula.actual_text`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    InterfaceTypeDefinitionNode,
    IntValueNode,
    ListValueNode,
    ObjectTypeDefinitionNode,
    OperationDefinitionNode,
    OperationType,
    StringValueNode,
    VariableNode,
    get_named_type,
    is_abstract_type,
    is_leaf_type,
    parse,
)
from graphql.execution.collect_fields import (
    FieldDetailsList,
    FragmentDetails,
    collect_fields,
    collect_subfields,
)
from graphql.execution.values import VariableValues

#: Weight of a mutation field without its own ``@cost``.
MUTATION_WEIGHT = 10
#: Fixed cost of ``__schema`` and of ``__type``, whatever they select.
INTROSPECTION = 100
#: Formulas kept per worker (one per document, operation and Boolean variables seen).
FORMULAS = 2048


@dataclasses.dataclass(frozen=True)
class FieldRule:
    """What the schema's directives say about one field definition."""

    weight: int | None = None
    slicing: tuple[str, ...] = ()
    sized: tuple[str, ...] = ()
    assumed: int | None = None


def rules_from_sdl(sdl: str) -> dict[tuple[str, str], FieldRule]:
    """``(type, field) -> FieldRule`` for every field that carries ``@cost`` or ``@listSize``."""
    rules: dict[tuple[str, str], FieldRule] = {}
    for definition in parse(sdl).definitions:
        if not isinstance(definition, ObjectTypeDefinitionNode | InterfaceTypeDefinitionNode):
            continue
        for field in definition.fields or ():
            found: dict[str, Any] = {}
            for directive in field.directives or ():
                arguments = {a.name.value: a.value for a in directive.arguments or ()}
                if directive.name.value == "cost":
                    weight = arguments["weight"]
                    assert isinstance(weight, StringValueNode)
                    found["weight"] = int(float(weight.value))
                elif directive.name.value == "listSize":
                    for name, key in (("slicingArguments", "slicing"), ("sizedFields", "sized")):
                        value = arguments.get(name)
                        if isinstance(value, ListValueNode):
                            found[key] = tuple(
                                v.value for v in value.values if isinstance(v, StringValueNode)
                            )
                    assumed = arguments.get("assumedSize")
                    if isinstance(assumed, IntValueNode):
                        found["assumed"] = int(assumed.value)
            if found:
                rules[(definition.name.value, field.name.value)] = FieldRule(**found)
    return rules


# --- formulas -------------------------------------------------------------------------------


class Size:
    """How many items a list field has, given the request's coerced variables."""

    def __call__(self, variables: Mapping[str, Any]) -> int | None:
        """The size, or None when the request does not say (the caller falls back)."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Constant(Size):
    n: int

    def __call__(self, variables: Mapping[str, Any]) -> int:
        return self.n


@dataclasses.dataclass(frozen=True)
class FromVariable(Size):
    """A variable's value (an ``Int``, or a list's length), at most ``limit``."""

    name: str
    length: bool
    limit: int

    def __call__(self, variables: Mapping[str, Any]) -> int | None:
        value = variables.get(self.name)
        if value is None:
            return None
        n = len(value) if self.length else int(value)
        return min(max(n, 0), self.limit)


@dataclasses.dataclass(frozen=True)
class Largest(Size):
    """The largest size the slicing arguments give (``first`` or ``last``), else ``assumed``."""

    parts: tuple[Size, ...]
    assumed: int

    def __call__(self, variables: Mapping[str, Any]) -> int:
        given = [n for n in (part(variables) for part in self.parts) if n is not None]
        return max(given) if given else self.assumed


ONE = Constant(1)


@dataclasses.dataclass(frozen=True)
class Term:
    """One selected field: ``size * (weight + children)``, children per possible type."""

    key: str
    name: str
    weight: int
    size: Size
    is_list: bool
    #: One tuple of children per possible runtime type (one for object types); the cost is
    #: the most expensive of them.
    children: tuple[tuple[Term, ...], ...] = ()

    def cost(self, variables: Mapping[str, Any]) -> int:
        inner = max((sum(c.cost(variables) for c in group) for group in self.children), default=0)
        return (self.size(variables) or 0) * (self.weight + inner)

    def count(self, value: Any) -> int:
        """The actual cost of ``value``, found under this term's key: its weight (per item for
        a weighted list), and its fields where they came back. Of an abstract field's possible
        types, each key is read as the first type that selects it."""
        if self.is_list:
            items = value if isinstance(value, list) else []
            total = self.weight * len(items)
        else:
            items, total = [value], self.weight
        children: dict[str, Term] = {}
        for group in self.children:
            for child in group:
                children.setdefault(child.key, child)
        for item in items:
            if isinstance(item, dict):
                total += sum(
                    child.count(item[key]) for key, child in children.items() if key in item
                )
        return total

    def walk(self, root: bool = True) -> Iterator[tuple[Term, bool]]:
        """This term and every term below it, each with whether it is a root field."""
        yield self, root
        for group in self.children:
            for child in group:
                yield from child.walk(False)


@dataclasses.dataclass(frozen=True)
class Formula:
    """An operation's cost as a function of its variables, and its shape's limits.

    The **actual** cost of an answer is the same sum over what came back: every field's weight
    once per place it appears in ``data`` (a null object still counts: it was looked up), and
    a weighted list's weight once per item. Since a response key is a GraphQL name and JSON
    escapes every quote inside a string, ``"key":`` occurs in the JSON text of ``data``
    exactly where that key is an object key, so the compiled path counts the text of its
    answer instead of decoding it (:meth:`actual_text`) and gets what :meth:`actual` gets from
    decoded data.
    """

    terms: tuple[Term, ...]
    depth: int
    aliases: int
    mutation: bool
    #: Response key -> weight of the field under it, for keys that always mean one weight.
    keyed: Mapping[str, int] = dataclasses.field(default_factory=dict)
    #: Response key -> weight of each item, for lists whose items weigh something.
    listed: Mapping[str, int] = dataclasses.field(default_factory=dict)
    #: The text of an answer can be counted: no key means two weights, and weighted lists are
    #: root fields only (whose item counts are their sizes).
    countable: bool = True

    @classmethod
    def of(cls, terms: tuple[Term, ...], depth: int, aliases: int, mutation: bool) -> Formula:
        keyed: dict[str, int] = {}
        listed: dict[str, int] = {}
        countable = True
        for root in terms:
            for term, at_root in root.walk():
                weighted_list = term.is_list and term.weight > 0
                table, other = (listed, keyed) if weighted_list else (keyed, listed)
                if table.get(term.key, term.weight) != term.weight or term.key in other:
                    countable = False  # one key, two weights: count by walking the data
                table[term.key] = term.weight
                if weighted_list and not at_root:
                    countable = False
        return cls(terms, depth, aliases, mutation, keyed, listed, countable)

    @functools.cached_property
    def patterns(self) -> tuple[tuple[bytes, int], ...]:
        """``"key":`` of every weighted key, with its weight."""
        return tuple((b'"' + k.encode() + b'":', w) for k, w in self.keyed.items() if w)

    @property
    def root_fields(self) -> int:
        return len(self.terms)

    def cost(self, variables: Mapping[str, Any]) -> int:
        return sum(term.cost(variables) for term in self.terms)

    def actual(self, data: Any) -> int:
        """The actual cost of decoded ``data``: the weights of its keys where they mean one
        weight each (:attr:`countable`, as :meth:`actual_text` counts), else field by field."""
        if not isinstance(data, dict):
            return 0
        if self.countable:
            return self._keys(data)
        return sum(term.count(data[term.key]) for term in self.terms if term.key in data)

    def _keys(self, value: Any) -> int:
        if isinstance(value, dict):
            total = 0
            for key, inner in value.items():
                if isinstance(inner, list) and key in self.listed:
                    total += self.listed[key] * len(inner)
                else:
                    total += self.keyed.get(key, 0)
                total += self._keys(inner)
            return total
        if isinstance(value, list):
            return sum(self._keys(item) for item in value)
        return 0

    def actual_text(self, data: bytes, variables: Mapping[str, Any]) -> int:
        """The actual cost of ``data`` as JSON text, without decoding it (when
        :attr:`countable`; the items of a weighted root list are as many as its size asks)."""
        assert self.countable
        total = sum(weight * data.count(pattern) for pattern, weight in self.patterns)
        for term in self.terms:
            if term.key in self.listed:
                total += self.listed[term.key] * (term.size(variables) or 0)
        return total

    def hot_paths(self, variables: Mapping[str, Any], count: int = 3) -> list[dict[str, Any]]:
        """The most expensive root fields, each followed down its most expensive branch."""
        ranked = sorted(self.terms, key=lambda t: t.cost(variables), reverse=True)[:count]
        paths = []
        for term in ranked:
            path, at = [term.key], term
            while at.children:
                group = max(at.children, key=lambda g: sum(c.cost(variables) for c in g))
                if not group:
                    break
                at = max(group, key=lambda c: c.cost(variables))
                if at.cost(variables) == 0:
                    break
                path.append(at.key)
            paths.append({"path": ".".join(path), "cost": term.cost(variables)})
        return paths


class CostModel:
    """Formulas for the documents of one schema, kept per worker (a bounded LRU)."""

    def __init__(
        self,
        schema: GraphQLSchema,
        rules: Mapping[tuple[str, str], FieldRule],
        *,
        max_page_size: int,
        size: int = FORMULAS,
    ) -> None:
        self.schema = schema
        self.rules = dict(rules)
        self.max_page_size = max_page_size
        self.size = size
        self._formulas: OrderedDict[tuple[int, str | None, tuple[Any, ...]], Formula]
        self._formulas = OrderedDict()
        # Keeps each cached document alive, so an id in a key is never reused meanwhile.
        self._documents: dict[int, tuple[DocumentNode, int]] = {}

    def formula(
        self,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        variables: VariableValues,
    ) -> Formula:
        """The formula of ``operation`` for requests with these Boolean variable values."""
        switches = tuple(
            variables.coerced.get(d.variable.name.value)
            for d in operation.variable_definitions or ()
            if _is_boolean(d.type)
        )
        key = (id(document), operation.name.value if operation.name else None, switches)
        found = self._formulas.get(key)
        if found is not None:
            self._formulas.move_to_end(key)
            return found
        formula = _Walk(self, document, operation, variables).formula()
        self._formulas[key] = formula
        held = self._documents.get(id(document))
        self._documents[id(document)] = (document, (held[1] if held else 0) + 1)
        while len(self._formulas) > self.size:
            (old, *_), _ = self._formulas.popitem(last=False)
            document_held, uses = self._documents[old]
            if uses == 1:
                del self._documents[old]
            else:
                self._documents[old] = (document_held, uses - 1)
        return formula


def _is_boolean(type_node: Any) -> bool:
    while hasattr(type_node, "type"):
        type_node = type_node.type
    return bool(type_node.name.value == "Boolean")


def _unwrap(type_: GraphQLOutputType) -> tuple[bool, GraphQLOutputType]:
    if isinstance(type_, GraphQLNonNull):
        type_ = type_.of_type
    return isinstance(type_, GraphQLList), type_


class _Walk:
    def __init__(
        self,
        model: CostModel,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        variables: VariableValues,
    ) -> None:
        self.model = model
        self.schema = model.schema
        self.operation = operation
        self.variables = variables
        self.fragments = {
            d.name.value: FragmentDetails(d)
            for d in document.definitions
            if isinstance(d, FragmentDefinitionNode)
        }
        self.depth = 0
        self.aliases = 0

    def formula(self) -> Formula:
        mutation = self.operation.operation is OperationType.MUTATION
        root = self.schema.get_root_type(self.operation.operation)
        assert root is not None
        collected = collect_fields(
            self.schema, self.fragments, self.variables, root, self.operation
        )
        terms = tuple(
            self.term(root, key, details, 1, root_weight=MUTATION_WEIGHT if mutation else None)
            for key, details in collected.grouped_field_set.items()
        )
        return Formula.of(terms, self.depth, self.aliases, mutation)

    def term(
        self,
        parent: GraphQLObjectType,
        key: str,
        details: FieldDetailsList,
        depth: int,
        *,
        root_weight: int | None = None,
        sized: Size | None = None,
    ) -> Term:
        node = details[0].node
        name = node.name.value
        if key != name:
            self.aliases += 1
        if name in ("__schema", "__type"):
            self.depth = max(self.depth, depth)
            return Term(key, name, INTROSPECTION, ONE, False)
        if name == "__typename":
            self.depth = max(self.depth, depth)
            return Term(key, name, 0, ONE, False)
        field = parent.fields[name]
        rule = self.model.rules.get((parent.name, name), FieldRule())
        is_list, _ = _unwrap(field.type)
        named = get_named_type(field.type)
        leaf = is_leaf_type(named)
        weight = rule.weight
        if weight is None:
            weight = root_weight if root_weight is not None else (0 if leaf else 1)
        self.depth = max(self.depth, depth)
        size: Size = ONE
        if is_list:
            size = sized or self.size(field, node, rule)
        if leaf:
            return Term(key, name, weight, size, is_list)
        own = self.size(field, node, rule) if rule.sized else None
        types: Iterable[GraphQLObjectType]
        if is_abstract_type(named):
            types = self.schema.get_possible_types(named)
        else:
            assert isinstance(named, GraphQLObjectType)
            types = (named,)
        groups = []
        for runtime in types:
            sub = collect_subfields(
                self.schema, self.fragments, self.variables, self.operation, runtime, details
            )
            groups.append(
                tuple(
                    self.term(
                        runtime,
                        sub_key,
                        sub_details,
                        depth + 1,
                        sized=own if sub_details[0].node.name.value in rule.sized else None,
                    )
                    for sub_key, sub_details in sub.grouped_field_set.items()
                )
            )
        return Term(key, name, weight, size, is_list, tuple(groups))

    def size(self, field: GraphQLField, node: FieldNode, rule: FieldRule) -> Size:
        """The list size a field's own arguments say (the largest of its slicing arguments)."""
        assumed = rule.assumed if rule.assumed is not None else 1
        limit = self.model.max_page_size
        given = {a.name.value: a.value for a in node.arguments or ()}
        parts: list[Size] = []
        for name in rule.slicing:
            argument = field.args.get(name)
            if argument is None:
                continue
            is_list, _ = _unwrap(argument.type)  # type: ignore[arg-type]
            value = given.get(name)
            if isinstance(value, VariableNode):
                parts.append(FromVariable(value.name.value, is_list, limit))
            elif isinstance(value, IntValueNode):
                parts.append(Constant(min(max(int(value.value), 0), limit)))
            elif isinstance(value, ListValueNode):
                parts.append(Constant(min(len(value.values), limit)))
            elif value is None and isinstance(argument.default_value, int):
                parts.append(Constant(min(max(argument.default_value, 0), limit)))
        constants = [part.n for part in parts if isinstance(part, Constant)]
        if parts and len(constants) == len(parts):
            return Constant(max(constants))
        return Largest(tuple(parts), assumed)
