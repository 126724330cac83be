"""``hms documents``: push manifests (all or nothing), list, retire, check against the schema."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
import redis

from hms import cli
from hms.cache import keys
from tests.conftest import SECRET

Run = Any
REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
def hms(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Run:
    monkeypatch.setenv("HMS_DATABASE_URL", database_url)
    monkeypatch.setenv("HMS_JWT_SECRET", SECRET)

    def run(*argv: str) -> tuple[int, str]:
        code = cli.main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    return run


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def apollo(*operations: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": "apollo-persisted-query-manifest",
        "version": 1,
        "operations": list(operations),
    }


def operation(body: str, **extra: Any) -> dict[str, Any]:
    name = body.split()[1]
    return {"id": sha(body), "body": body, "name": name, "type": "query", **extra}


def rows(database_url: str, ids: list[str]) -> list[Any]:
    async def fetch() -> list[Any]:
        conn = await asyncpg.connect(database_url)
        try:
            return list(
                await conn.fetch(
                    "SELECT * FROM persisted_document WHERE id = ANY($1::text[]) ORDER BY id",
                    ids,
                )
            )
        finally:
            await conn.close()

    return asyncio.run(fetch())


def test_push_list_merge_and_retire(hms: Run, tmp_path: Path, database_url: str) -> None:
    tag = uuid.uuid4().hex[:8]
    first = f"query A{tag} {{ patientStats {{ total }} }}"
    second = f"query B{tag}($n: Int) {{ patients(first: $n) {{ totalCount }} }}"
    manifest = tmp_path / "apollo.json"
    manifest.write_bytes(orjson.dumps(apollo(operation(first), operation(second))))
    code, output = hms(
        "documents", "push", str(manifest), "--client", "ios", "--app-version", "1.0"
    )
    assert code == 0, output
    assert "pushed 2 document(s)" in output
    assert "2 new" in output
    code, output = hms(
        "documents", "push", str(manifest), "--client", "android", "--app-version", "2.0"
    )
    assert "0 new" in output
    ids = ["sha256:" + sha(first), "sha256:" + sha(second)]
    stored = {row["id"]: row for row in rows(database_url, ids)}
    assert sorted(stored[ids[0]]["client_names"]) == ["android", "ios"]
    assert sorted(stored[ids[0]]["app_versions"]) == ["1.0", "2.0"]
    assert stored[ids[1]]["operation_name"] == f"B{tag}"

    code, output = hms("documents", "list")
    assert f"{ids[0]}  active" in output
    code, output = hms("documents", "retire", ids[0])
    assert code == 0
    assert "workers stop serving it within" in output
    code, output = hms("documents", "retire", ids[0])
    assert code == 2
    assert "no active document" in output
    assert rows(database_url, ids[:1])[0]["retired_at"] is not None


def test_retire_deletes_the_cached_copy(
    hms: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = f"query C{uuid.uuid4().hex[:8]} {{ patientStats {{ total }} }}"
    manifest = tmp_path / "apollo.json"
    manifest.write_bytes(orjson.dumps(apollo(operation(body))))
    assert hms("documents", "push", str(manifest))[0] == 0
    key = "hms:" + keys.trusted_document(sha(body))
    client = redis.Redis.from_url(REDIS)
    client.set(key, body, ex=600)  # as a server that has served it
    monkeypatch.setenv("HMS_REDIS_URL", REDIS)
    code, output = hms("documents", "retire", "sha256:" + sha(body))
    assert code == 0, output
    assert "within 60 s" in output
    assert client.exists(key) == 0
    client.close()


def test_a_relay_map_is_accepted(hms: Run, tmp_path: Path, database_url: str) -> None:
    body = f"query Relay{uuid.uuid4().hex[:8]} {{ viewer {{ userId }} }}"
    manifest = tmp_path / "persisted_queries.json"
    manifest.write_bytes(orjson.dumps({sha(body): body}))
    code, output = hms("documents", "push", str(manifest))
    assert code == 0, output
    assert rows(database_url, ["sha256:" + sha(body)])[0]["body"] == body


def test_a_manifest_with_any_bad_entry_is_refused_whole(
    hms: Run, tmp_path: Path, database_url: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    good = f"query Good{tag} {{ patientStats {{ total }} }}"
    wrong_id = operation(f"query Wrong{tag} {{ patientStats {{ total }} }}", id="0" * 64)
    invalid = operation(f"query Invalid{tag} {{ patientStats {{ nope }} }}")
    two = operation(f"query Two{tag} {{ viewer {{ userId }} }} query Three {{ __typename }}")
    manifest = tmp_path / "bad.json"
    manifest.write_bytes(orjson.dumps(apollo(operation(good), wrong_id, invalid, two)))
    code, output = hms("documents", "push", str(manifest))
    assert code == 2
    assert "3 bad document(s), none pushed" in output
    assert f"operations[1] (Wrong{tag}): its id is not the SHA-256 of its body" in output
    assert f"operations[2] (Invalid{tag}): Cannot query field 'nope'" in output
    assert "exactly one operation" in output
    assert rows(database_url, ["sha256:" + sha(good)]) == []


def test_check_finds_documents_a_schema_change_broke(
    hms: Run, tmp_path: Path, database_url: str
) -> None:
    """A document registered before a field went away: check names it until it is retired."""
    body = f"query Gone{uuid.uuid4().hex[:8]} {{ patientStats {{ removedField }} }}"
    document = "sha256:" + sha(body)

    async def insert() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(
                "INSERT INTO persisted_document (id, body, operation_name, operation_type)"
                " VALUES ($1, $2, 'Gone', 'query')",
                document,
                body,
            )
        finally:
            await conn.close()

    asyncio.run(insert())
    code, output = hms("documents", "check")
    assert code == 2
    assert f"{document} (Gone" in output
    assert "removedField" in output
    hms("documents", "retire", document)
    code, output = hms("documents", "check")
    assert code == 0, output
    assert "all valid" in output
