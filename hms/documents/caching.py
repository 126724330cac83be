"""How long a client may keep a response: derived from the fields the document reads.

Anything that reads patient data is ``private, no-store``. Reference data — a hospital's
practitioners, the hospital itself — carries a hint here, and a document whose every field is
hinted may be kept for the smallest hint. No hint anywhere means no storing. The answer is per
document, computed once when the document is validated.
"""

from __future__ import annotations

from graphql import DocumentNode, FieldNode, GraphQLSchema, TypeInfo, TypeInfoVisitor, visit
from graphql.language import Visitor

#: Seconds a client may keep a field's value; ``*`` covers every field of a type.
HINTS: dict[tuple[str, str], int] = {
    ("Query", "practitioners"): 300,
    ("PractitionerConnection", "*"): 300,
    ("PractitionerEdge", "cursor"): 300,
    ("PractitionerEdge", "node"): 300,
    ("PageInfo", "*"): 300,
    ("Practitioner", "id"): 300,
    ("Practitioner", "givenName"): 300,
    ("Practitioner", "familyName"): 300,
    ("Practitioner", "specialty"): 300,
    ("Practitioner", "active"): 300,
    ("Query", "viewer"): 300,
    ("Viewer", "hospital"): 300,
    ("Hospital", "*"): 3600,
}


class _Hints(Visitor):
    def __init__(self, type_info: TypeInfo) -> None:
        super().__init__()
        self.type_info = type_info
        self.max_age: int | None = None
        self.uncacheable = False

    def enter_field(self, node: FieldNode, *_args: object) -> None:
        name = node.name.value
        if name == "__typename":
            return
        parent = self.type_info.get_parent_type()
        owner = "" if parent is None else parent.name
        hint = HINTS.get((owner, name), HINTS.get((owner, "*")))
        if hint is None:
            self.uncacheable = True
        else:
            self.max_age = hint if self.max_age is None else min(self.max_age, hint)


def max_age(schema: GraphQLSchema, document: DocumentNode) -> int | None:
    """Seconds a client may keep the answer to ``document``, or None: not at all."""
    type_info = TypeInfo(schema)
    hints = _Hints(type_info)
    visit(document, TypeInfoVisitor(type_info, hints))
    return None if hints.uncacheable else hints.max_age
