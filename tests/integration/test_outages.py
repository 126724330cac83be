"""PostgreSQL goes away and comes back (issue 6, defects 5 and 6), on a private server that this
module really stops and starts.

Before: during a restart, mutations with an Idempotency-Key got plain-text 500s and other
requests 200 with masked internal errors; the first /readyz after the restart was a false 503
from a stale pooled connection; ``hms serve`` with the database down printed a 52-line
traceback after one second.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette

from hms.app import create_app
from hms.persistence import migrate
from hms.security.tokens import issue
from hms.settings import Settings
from tests.conftest import SECRET, without_cost
from tests.interop.servers import ROOT, clean_env, free_port
from tests.pgserver import PrivatePostgres, private_postgres

GRAPHQL_RESPONSE = "application/graphql-response+json"
HOSPITAL = uuid.UUID("01900000-0000-7000-8000-00000000beef")


@pytest.fixture(scope="module")
def server() -> Iterator[PrivatePostgres]:
    with private_postgres() as pg:
        pg.start()
        migrate.upgrade(pg.url())
        asyncio.run(_add_hospital(pg.url()))
        yield pg


async def _add_hospital(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO hospital (id, slug, name) VALUES ($1, 'outage', 'Outage')", HOSPITAL
        )
    finally:
        await conn.close()


@pytest.fixture
async def app(server: PrivatePostgres, settings: Settings) -> AsyncIterator[Starlette]:
    if not server.running():
        server.start()
    application = create_app(settings.with_(database_url=server.url(), db_connect_timeout=2.0))
    async with application.router.lifespan_context(application):
        yield application


async def call(app: Starlette, body: dict[str, Any], **headers: str) -> httpx.Response:
    token = issue(SECRET, subject="ops", hospital_id=HOSPITAL, roles=["admin"])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hms.test") as client:
        return await client.post(
            "/graphql", json=body, headers={"Authorization": f"Bearer {token}", **headers}
        )


async def get(app: Starlette, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hms.test") as client:
        return await client.get(path)


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "2"
    body = response.json()
    assert "data" not in body
    assert body["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"


CREATE = {
    "query": 'mutation { createPatient(input: {mrn: "OUT-1", givenName: "Al", familyName: "Ive"})'
    " { patient { mrn } } }"
}
STATS = {"query": "{ patientStats { total } }"}


async def test_a_database_outage_is_503_and_the_first_request_after_it_works(
    app: Starlette, server: PrivatePostgres
) -> None:
    assert without_cost((await call(app, STATS)).json()) == {"data": {"patientStats": {"total": 0}}}
    assert (await get(app, "/readyz")).status_code == 200

    server.stop()
    try:
        assert_unavailable(await call(app, STATS))
        assert_unavailable(await call(app, STATS, accept=GRAPHQL_RESPONSE))
        response = await call(app, CREATE, **{"Idempotency-Key": "outage-1"})
        assert_unavailable(response)
        assert response.headers["content-type"].startswith("application/json")
        ready = await get(app, "/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"].startswith("unavailable")
        assert (await get(app, "/healthz")).status_code == 200
    finally:
        server.start()

    # The pool still holds connections to the old server: none of them may surface as an error.
    assert (await get(app, "/readyz")).status_code == 200
    assert without_cost((await call(app, STATS)).json()) == {"data": {"patientStats": {"total": 0}}}
    created = await call(app, CREATE, **{"Idempotency-Key": "outage-1"})
    assert without_cost(created.json()) == {
        "data": {"createPatient": {"patient": {"mrn": "OUT-1"}}}
    }


async def test_the_first_readiness_probe_after_a_restart_is_true(
    app: Starlette, server: PrivatePostgres
) -> None:
    assert (await get(app, "/readyz")).status_code == 200  # a pooled connection exists now
    server.stop()
    server.start()
    assert (await get(app, "/readyz")).status_code == 200


def serve(server: PrivatePostgres, **extra: str) -> subprocess.Popen[bytes]:
    port = free_port()
    env = clean_env(
        HMS_DATABASE_URL=server.url(),
        HMS_JWT_SECRET=SECRET,
        HMS_ENV="prod",
        HMS_PORT=str(port),
        **extra,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "hms.cli", "serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    process.port = port  # type: ignore[attr-defined]
    return process


def test_serve_waits_for_the_database_with_one_line(server: PrivatePostgres) -> None:
    if server.running():
        server.stop()
    process = serve(server, HMS_DB_STARTUP_TIMEOUT="60")
    try:
        time.sleep(2.5)
        assert process.poll() is None, "serve gave up instead of waiting"
        server.start()
        url = f"http://127.0.0.1:{process.port}/healthz"  # type: ignore[attr-defined]
        # First start: migrations and the demo data come before the server (seconds, more on
        # a loaded machine), so the bound is time, not a count of refused connections.
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail("serve did not come up after the database did")
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=20)
    text = output.decode()
    assert text.count("waiting for PostgreSQL at") == 1, text
    assert "PostgreSQL is up" in text
    assert "Traceback" not in text


def test_serve_gives_up_with_one_clear_line(server: PrivatePostgres) -> None:
    if server.running():
        server.stop()
    started = time.monotonic()
    process = serve(server, HMS_DB_STARTUP_TIMEOUT="1.5")
    output, _ = process.communicate(timeout=30)
    text = output.decode()
    assert process.returncode == 1
    assert time.monotonic() - started < 15
    assert "is not reachable after 1.5 s" in text
    assert "HMS_DB_STARTUP_TIMEOUT" in text
    assert "Traceback" not in text
    server.start()
