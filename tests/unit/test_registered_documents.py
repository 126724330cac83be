"""The team's registered documents (``documents/manifest.json``) against ``schema.graphql``.

Apps in the field send these by hash only. A schema change that breaks one of them breaks
those apps, so it fails here, in review, before ``hms documents check`` would find it in a
deployed registry. (``test_schema_file`` keeps ``schema.graphql`` equal to the code.)
"""

from __future__ import annotations

from pathlib import Path

import orjson
from graphql import build_schema

from hms.documents import DocumentCache
from hms.documents.manifest import check
from hms.limits.inputs import InputLimitsRule
from hms.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_every_registered_document_is_valid_against_the_committed_schema() -> None:
    schema = build_schema((ROOT / "schema.graphql").read_text())
    manifest = orjson.loads((ROOT / "documents" / "manifest.json").read_bytes())
    settings = Settings()
    documents = DocumentCache(
        schema,
        size=100,
        introspection=False,
        max_tokens=settings.max_query_tokens,
        extra_rules=(InputLimitsRule,),
    )
    checked = check(manifest, schema, documents)
    assert checked.problems == []
    assert [entry.operation_name for entry in checked.entries] == ["Nested", "Patient", "Team"]


def test_the_check_catches_a_removed_field() -> None:
    """The same check, against the schema with a field the manifest reads taken away."""
    sdl = (ROOT / "schema.graphql").read_text()
    assert "  specialty: String!\n" in sdl
    schema = build_schema(sdl.replace("  specialty: String!\n", "", 1))
    manifest = orjson.loads((ROOT / "documents" / "manifest.json").read_bytes())
    documents = DocumentCache(schema, size=100, introspection=False, max_tokens=10_000)
    checked = check(manifest, schema, documents)
    assert checked.problems == [
        "operations[2] (Team): Cannot query field 'specialty' on type 'Practitioner'."
    ]
