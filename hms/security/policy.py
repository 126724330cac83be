"""Who reads and writes what: the one policy table (issue 10, DESIGN §7).

Fields that carry patient information are classed in the schema with ``@phi(class: …)``
(printed in ``schema.graphql``); this module says which role reads which class and which role
runs which mutation. Both execution paths enforce it from here: the interpreted path guards each
classed field (a field a role may not read is null with a ``FORBIDDEN`` error on its path), the
compiled path leaves any operation that selects such a field to the interpreted path. A caller
with none of the roles below is refused at the door (403).

Minimum necessary: an administrator runs the hospital's records but does not read clinical
text; an auditor sees who a patient is, not how to reach them or why they came; a machine
client (``service``) gets what it needs to send reminders.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

from graphql import (
    DocumentNode,
    EnumValueNode,
    FieldDefinitionNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    ObjectTypeDefinitionNode,
    ObjectTypeExtensionNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    get_named_type,
    parse,
)


class FieldClass(enum.Enum):
    """What a field tells about a patient."""

    DEMOGRAPHIC = "DEMOGRAPHIC"  # who the patient is: MRN, name, gender, active
    CONTACT = "CONTACT"  # how to reach them: phone, email
    CLINICAL = "CLINICAL"  # why they came and what happened: reasons, notes
    SENSITIVE = "SENSITIVE"  # identifiers beyond the name: birth date, national id digits


D, C, K, S = (
    FieldClass.DEMOGRAPHIC,
    FieldClass.CONTACT,
    FieldClass.CLINICAL,
    FieldClass.SENSITIVE,
)

#: Role -> the classes it reads. Unclassed fields (ids, times, statuses) any role reads.
READS: Mapping[str, frozenset[FieldClass]] = {
    "admin": frozenset({D, C, S}),
    "clinician": frozenset({D, C, K, S}),
    "front_desk": frozenset({D, C, S}),
    "auditor": frozenset({D}),
    "service": frozenset({D, C}),
}

ROLES = tuple(READS)

_STAFF = frozenset({"admin", "clinician", "front_desk"})

#: Who requests reports (CSV exports of a hospital's appointments or encounters), reads their
#: status and downloads them. A report holds names and MRNs, so each of these roles must read
#: demographic fields (a test checks); it holds no contact, clinical or sensitive field.
REPORTERS = frozenset({"admin", "clinician"})

#: Mutation field -> the roles that may run it.
WRITES: Mapping[str, frozenset[str]] = {
    "createPatient": _STAFF,
    "updatePatient": _STAFF,
    "scheduleAppointment": _STAFF,
    "rescheduleAppointment": _STAFF,
    "cancelAppointment": _STAFF,
    "setAppointmentStatus": _STAFF,
    "recordEncounter": frozenset({"clinician"}),
    "openEmergencyAccess": frozenset({"clinician"}),
    "revealNationalId": frozenset({"admin", "clinician"}),
    "requestReport": REPORTERS,
}

#: The classes a confidential record (a patient marked ``confidential``, and its appointments
#: and encounters) shows only to a caller holding an open emergency grant for that patient.
CONFIDENTIAL_CLASSES = frozenset({K, S})

#: Who marks a patient confidential or lifts the mark.
LABELERS = frozenset({"admin", "clinician"})


#: Who reads the audit trail ("who viewed this patient").
AUDIT_READERS = frozenset({"auditor", "admin"})


def known(roles: Iterable[str]) -> frozenset[str]:
    """The roles of ``roles`` this policy knows; others grant nothing."""
    return frozenset(role for role in roles if role in READS)


def readable(roles: Iterable[str]) -> frozenset[FieldClass]:
    """The classes a caller with ``roles`` reads: the union of its roles' grants."""
    classes: set[FieldClass] = set()
    for role in roles:
        classes |= READS.get(role, frozenset())
    return frozenset(classes)


def may_write(mutation: str, roles: Iterable[str]) -> bool:
    allowed = WRITES.get(mutation)
    if allowed is None:  # a new mutation nobody classed: refused until it is
        return False
    return not allowed.isdisjoint(roles)


def may_label(roles: Iterable[str]) -> bool:
    return not LABELERS.isdisjoint(roles)


def may_report(roles: Iterable[str]) -> bool:
    return not REPORTERS.isdisjoint(roles)


def report_refusal() -> str:
    return f"Your role may not read reports (roles that may: {', '.join(sorted(REPORTERS))})"


def read_refusal(field_class: FieldClass) -> str:
    return f"Your role may not read {field_class.value.lower()} fields"


def write_refusal(mutation: str) -> str:
    roles = ", ".join(sorted(WRITES.get(mutation, ())))
    return f"Your role may not run {mutation}" + (f" (roles that may: {roles})" if roles else "")


def classes_from_sdl(sdl: str) -> dict[tuple[str, str], FieldClass]:
    """``(type, field) -> class`` for every field with ``@phi`` in the schema's SDL."""
    classes = {}
    for definition in parse(sdl).definitions:
        if not isinstance(definition, ObjectTypeDefinitionNode | ObjectTypeExtensionNode):
            continue
        for field in definition.fields or ():
            found = _phi(field)
            if found is not None:
                classes[(definition.name.value, field.name.value)] = found
    return classes


def _phi(field: FieldDefinitionNode) -> FieldClass | None:
    for directive in field.directives or ():
        if directive.name.value != "phi":
            continue
        for argument in directive.arguments or ():
            if argument.name.value == "class" and isinstance(
                argument.value, EnumValueNode | StringValueNode
            ):
                return FieldClass(argument.value.value)
    return None


def markdown(classes: Mapping[tuple[str, str], FieldClass]) -> str:
    """The policy as the tables SECURITY.md shows (``hms policy`` prints them)."""
    lines = ["| class | fields | " + " | ".join(ROLES) + " |"]
    lines.append("| --- | --- |" + " :---: |" * len(ROLES))
    for field_class in FieldClass:
        fields = sorted(f"`{t}.{f}`" for (t, f), c in classes.items() if c is field_class)
        marks = " | ".join("read" if field_class in READS[role] else "—" for role in ROLES)
        lines.append(f"| {field_class.value.lower()} | {', '.join(fields)} | {marks} |")
    lines.append("")
    lines.append("| mutation | " + " | ".join(ROLES) + " |")
    lines.append("| --- |" + " :---: |" * len(ROLES))
    for mutation, allowed in WRITES.items():
        marks = " | ".join("run" if role in allowed else "—" for role in ROLES)
        lines.append(f"| `{mutation}` | {marks} |")
    return "\n".join(lines) + "\n"


def selected_classes(
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
