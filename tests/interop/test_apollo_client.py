"""A real Apollo Client 4 (npm @apollo/client with its persisted-query link) against a real
``hms serve`` (issue 8).

Automatic persisted queries: the first request sends the hash only and is told
PersistedQueryNotFound, the client sends the document with its hash, and from then on the hash
alone is enough — by POST, and with ``useGETForHashedQueries`` by a single GET. A trusted client
(its name mapped to the trusted mode) runs the document pushed from the client's own manifest by
hash only, and an unregistered one is refused with PERSISTED_QUERY_NOT_IN_LIST, without the
client retrying with the full text.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import fixtures
from tests.conftest import SECRET, token
from tests.interop.servers import ROOT, clean_env, free_port, running

pytestmark = pytest.mark.interop

HERE = Path(__file__).resolve().parent
REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
def server(
    node: str,
    database_url: str,
    dataset: fixtures.Dataset,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("apollo")
    manifest = directory / "manifest.json"
    made = subprocess.run(
        [node, str(HERE / "apollo.mjs"), "manifest"],
        cwd=HERE, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    manifest.write_text(made.stdout)
    env = clean_env(
        HMS_DATABASE_URL=database_url,
        HMS_JWT_SECRET=SECRET,
        HMS_REDIS_URL=REDIS,
        HMS_ENV="prod",
        HMS_DOCUMENT_MODE="open",
        HMS_DOCUMENT_MODES="ios=trusted",
    )
    pushed = subprocess.run(
        [sys.executable, "-m", "hms.cli", "documents", "push", str(manifest), "--client", "ios"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    port = free_port()
    log = directory / "serve.log"
    command = [sys.executable, "-m", "hms.cli", "serve"]
    with running(command, {**env, "HMS_PORT": str(port)}, port, log) as url:
        yield f"{url}/graphql"


@pytest.fixture(scope="module")
def scenarios(node: str, server: str, dataset: fixtures.Dataset) -> dict[str, Any]:
    run = subprocess.run(
        [node, str(HERE / "apollo.mjs"), "run", server, token(dataset.alpha), uuid.uuid4().hex],
        cwd=HERE, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    result: dict[str, Any] = json.loads(run.stdout)
    return result


def sent(scenario: dict[str, Any]) -> list[tuple[str, bool, int]]:
    return [(r["method"], r["hasQuery"], r["status"]) for r in scenario["sent"]]


def test_automatic_persisted_queries_with_apollo_client(scenarios: dict[str, Any]) -> None:
    first = scenarios["apq-first"]
    assert sent(first) == [("POST", False, 200), ("POST", True, 200)]
    assert first["data"]["patientStats"]["total"] == 120
    again = scenarios["apq-again"]
    assert sent(again) == [("POST", False, 200)]
    assert again["data"] == first["data"]
    get = scenarios["apq-get"]
    assert sent(get) == [("GET", False, 200)]
    assert get["data"] == first["data"]


def test_a_trusted_client_runs_its_manifest_and_nothing_else(scenarios: dict[str, Any]) -> None:
    hit = scenarios["trusted-hit"]
    assert sent(hit) == [("POST", False, 200)]
    assert len(hit["data"]["practitioners"]["edges"]) == 2
    assert sent(scenarios["trusted-get"]) == [("GET", False, 200)]
    refused = scenarios["trusted-refused"]
    assert refused["error"] == "PERSISTED_QUERY_NOT_IN_LIST"
    assert sent(refused) == [("POST", False, 403)]  # no retry with the full document
