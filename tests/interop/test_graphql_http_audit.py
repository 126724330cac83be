"""The graphql-http server audit (GraphQL-over-HTTP conformance) against the real server.

A uvicorn subprocess serves the app on a free loopback port over the session's test database, and
``audit.mjs`` (node, pinned ``graphql-http``) runs every audit through real sockets. DESIGN §6: no
MUST or SHOULD audit may fail. Needs ``node`` (see tests/interop/conftest.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import fixtures
from tests.conftest import SECRET, token
from tests.interop.servers import clean_env, free_port, running

pytestmark = pytest.mark.interop

HERE = Path(__file__).resolve().parent
AUDIT = HERE / "audit.mjs"
STARTUP_SECONDS = 30.0
AUDIT_SECONDS = 120.0


@pytest.fixture(scope="module")
def server(
    database_url: str, dataset: fixtures.Dataset, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The GraphQL URL of a real uvicorn process serving the app; stopped after the module."""
    port = free_port()
    # Only the settings chosen here: an inherited HMS_* (a Redis URL, prod mode) would change
    # what is audited.
    env = clean_env(
        HMS_ENV="dev", HMS_DATABASE_URL=database_url, HMS_JWT_SECRET=SECRET, HMS_DB_POOL_SIZE="2"
    )
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "hms.cli:app_factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    log = tmp_path_factory.mktemp("server") / "uvicorn.log"
    with running(command, env, port, log, startup=STARTUP_SECONDS) as base:
        yield f"{base}/graphql"


def _explain(report: dict[str, Any]) -> str:
    lines = [f"counts: {report['counts']}"]
    for audit in report["audits"]:
        if audit["status"] != "ok":
            lines.append(
                f"[{audit['status']}] {audit['id']} {audit['name']}: {audit.get('reason')}"
                f" -> {json.dumps(audit.get('response'))}"
            )
    return "\n".join(lines)


def test_graphql_http_server_audit_has_no_must_or_should_failures(
    node: str, server: str, dataset: fixtures.Dataset
) -> None:
    run = subprocess.run(
        [node, str(AUDIT), server],
        cwd=HERE,
        env={**os.environ, "HMS_AUDIT_TOKEN": token(dataset.alpha)},
        capture_output=True,
        text=True,
        timeout=AUDIT_SECONDS,
        check=False,
    )
    try:
        report: dict[str, Any] = json.loads(run.stdout)
    except json.JSONDecodeError:
        pytest.fail(
            f"audit.mjs exited {run.returncode} without a report:\n{run.stdout}{run.stderr}"
        )
    audits: list[dict[str, Any]] = report["audits"]
    # Not vacuous: the audit ran in full, MUSTs included, and most of it passed through our auth.
    assert sum(a["name"].startswith("MUST") for a in audits) >= 10, _explain(report)
    assert run.returncode == 0, f"failing audits: {report['failures']}\n{_explain(report)}"
    assert all(a["status"] == "ok" for a in audits if a["name"].startswith(("MUST", "SHOULD")))
