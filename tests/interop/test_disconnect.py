"""A client that goes away has its request cancelled, in the app and in PostgreSQL (issue 6,
defect 3), on a real ``hms serve`` over a real socket.

The request is held in PostgreSQL by a lock another session holds; the client sends it and
hangs up. With a 30-second read deadline, only the server noticing the disconnect can end the
statement within a second or two.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest

from hms.persistence.urls import asyncpg_dsn
from tests import fixtures
from tests.conftest import SECRET, token, without_cost
from tests.interop.servers import clean_env, free_port, running

WAITING = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND application_name = 'hms' AND wait_event_type = 'Lock'
"""


@pytest.fixture(scope="module")
def server(
    database_url: str, dataset: fixtures.Dataset, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    port = free_port()
    env = clean_env(
        HMS_DATABASE_URL=database_url,
        HMS_JWT_SECRET=SECRET,
        HMS_PORT=str(port),
        HMS_ENV="prod",
        HMS_READ_TIMEOUT="30",
    )
    log = tmp_path_factory.mktemp("disconnect") / "serve.log"
    with running([sys.executable, "-m", "hms.cli", "serve"], env, port, log) as url:
        yield url, log


def send_and_hang_up(url: str, authorization: str, seconds: float) -> None:
    host, port = url.removeprefix("http://").split(":")
    body = orjson.dumps({"query": "{ patientStats { total } }"})
    request = (
        f"POST /graphql HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Authorization: {authorization}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(request)
        time.sleep(seconds)


async def waiting(database_url: str) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return int(await conn.fetchval(WAITING))
    finally:
        await conn.close()


async def test_a_client_that_hangs_up_frees_its_statement(
    server: tuple[str, Path], database_url: str, dataset: fixtures.Dataset
) -> None:
    url, log = server
    authorization = f"Bearer {token(dataset.alpha)}"
    holder = await asyncpg.connect(asyncpg_dsn(database_url))
    tx = holder.transaction()
    await tx.start()
    await holder.execute("LOCK TABLE patient IN ACCESS EXCLUSIVE MODE")
    try:
        await asyncio.to_thread(send_and_hang_up, url, authorization, 1.0)
        assert await waiting(database_url) <= 1  # at most the request just abandoned
        for _ in range(30):  # within three seconds
            if not await waiting(database_url):
                break
            await asyncio.sleep(0.1)
        assert await waiting(database_url) == 0, "the abandoned statement still waits"
    finally:
        await tx.rollback()
        await holder.close()
    # And the server still answers.
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{url}/graphql",
            json={"query": "{ patientStats { total } }"},
            headers={"Authorization": authorization},
            timeout=10,
        )
    assert without_cost(response.json()) == {"data": {"patientStats": {"total": 120}}}
    assert "Traceback" not in log.read_text()
