"""Manifests of trusted documents: Apollo's persisted query manifest and Relay's map.

``hms documents push`` reads either, recomputes every id from the exact body, validates every
document against the current schema, and accepts the manifest only if every entry is good; a
bad manifest is refused whole, naming each bad entry.

- Apollo: ``{"format": "apollo-persisted-query-manifest", "version": 1, "operations":
  [{"id", "body", "name", "type"}]}`` (``id`` is the SHA-256 hex of ``body``).
- Relay: ``persisted_queries.json``, ``{"<sha256 hex>": "<document>"}`` (Relay configured for
  SHA-256).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from graphql import GraphQLSchema, OperationDefinitionNode, OperationType

from hms.documents.cache import DocumentCache
from hms.documents.persisted import PREFIX, document_id
from hms.persistence.documents import Entry


@dataclasses.dataclass(frozen=True)
class Checked:
    entries: list[Entry]
    problems: list[str]


def _items(manifest: Any) -> Iterable[tuple[str, object, object]]:
    """(label, given id, body) for each entry, whatever the format."""
    if isinstance(manifest, dict) and manifest.get("format") == "apollo-persisted-query-manifest":
        if manifest.get("version") != 1:
            raise ValueError("an Apollo manifest of version 1 is expected")
        operations = manifest.get("operations")
        if not isinstance(operations, list):
            raise ValueError("an Apollo manifest needs an 'operations' list")
        for index, operation in enumerate(operations):
            if not isinstance(operation, dict):
                yield f"operations[{index}]", None, None
                continue
            label = f"operations[{index}] ({operation.get('name') or 'anonymous'})"
            yield label, operation.get("id"), operation.get("body")
    elif isinstance(manifest, dict):
        for key, body in manifest.items():
            yield f"{key[:16]}…", key, body
    else:
        raise ValueError("not an Apollo persisted query manifest nor a Relay map")


def check(manifest: Any, schema: GraphQLSchema, documents: DocumentCache) -> Checked:
    """Every entry hashed and validated; ``problems`` names each bad one."""
    entries: list[Entry] = []
    problems: list[str] = []
    for label, given, body in _items(manifest):
        if not isinstance(body, str) or not body.strip():
            problems.append(f"{label}: no document body")
            continue
        digest = document_id(body)
        if given is not None and given not in (digest, digest[len(PREFIX) :]):
            problems.append(f"{label}: its id is not the SHA-256 of its body")
            continue
        document = documents.get(body)
        if document.errors or document.ast is None:
            problems.append(f"{label}: {document.errors[0].message}")
            continue
        operations = [d for d in document.ast.definitions if isinstance(d, OperationDefinitionNode)]
        if len(operations) != 1:
            problems.append(f"{label}: a persisted document holds exactly one operation")
            continue
        (operation,) = operations
        if operation.operation is OperationType.SUBSCRIPTION:
            problems.append(f"{label}: subscriptions are not served")
            continue
        entries.append(
            Entry(
                id=digest,
                body=body,
                operation_name=operation.name.value if operation.name else None,
                operation_type=operation.operation.value,
            )
        )
    return Checked(entries, problems)
