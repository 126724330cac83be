"""The README's run command, for real: ``hms serve`` with no configuration at all.

Starts the CLI in a fresh data dir (so the embedded PostgreSQL 18 is initialised, migrated and
seeded), reads the demo token it prints, and queries it over a real socket.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.interop.servers import clean_env, free_port, running

STARTUP_SECONDS = 120.0


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    data_dir = tmp_path_factory.mktemp("hms-serve")
    log = data_dir / "serve.log"
    port = free_port()
    env = clean_env(HMS_DATA_DIR=str(data_dir / "data"), HMS_PORT=str(port))
    command = [sys.executable, "-m", "hms.cli", "serve"]
    with running(command, env, port, log, startup=STARTUP_SECONDS) as url:
        yield url, log
    # The embedded PostgreSQL stops with the server: nothing is left running after SIGTERM.
    postmaster = data_dir / "data" / "pg18" / "postmaster.pid"
    deadline = time.monotonic() + 20
    while postmaster.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not postmaster.exists(), "hms serve left its embedded PostgreSQL running"


def test_serve_on_the_embedded_default(served: tuple[str, Path]) -> None:
    url, log = served
    output = log.read_text()
    assert "embedded PostgreSQL 18" in output
    assert "caches live in process memory" in output
    assert f"GraphQL: {url}/graphql" in output
    tokens = re.findall(r"Demo token \(([^,]+), clinician\): (\S+)", output)
    assert len(tokens) == 2
    for _slug, token in tokens:
        response = httpx.post(
            f"{url}/graphql",
            json={
                "query": "{ viewer { hospital { slug } } patientStats { total } "
                "patients(first: 2) { edges { node { appointments(first: 1) { totalCount } } } } }"
            },
            headers={"Authorization": f"Bearer {token}"},
            timeout=10.0,
        )
        body = response.json()
        assert "errors" not in body, body
        assert body["data"]["patientStats"]["total"] == 300
        assert body["data"]["viewer"]["hospital"]["slug"] == _slug
    ready = httpx.get(f"{url}/readyz", timeout=5.0)
    assert ready.json()["checks"] == {"database": "ok", "cache": "ok"}
