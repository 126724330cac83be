"""SIGTERM on a real ``hms serve``: requests in flight finish, new connections are refused,
``/readyz`` drains, and the process exits 0 within ``HMS_SHUTDOWN_TIMEOUT`` (issue 11).

A request is held in flight by a row lock this test takes: ``updatePatient`` waits on it in
PostgreSQL until the test lets go, so the signal provably arrives while the write is running.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from hms.persistence.urls import asyncpg_dsn
from tests import fixtures
from tests.api.writes import UPDATE_PATIENT, gid, make_hospital, rows
from tests.conftest import SECRET, token, without_cost
from tests.interop.servers import clean_env, free_port, started

WAITING = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND application_name = 'hms' AND wait_event_type = 'Lock'
"""
REDIS = "redis://127.0.0.1:6379/0"

Server = tuple[subprocess.Popen[bytes], str, Path]


@pytest.fixture
async def ward(database_url: str, dataset: fixtures.Dataset) -> fixtures.HospitalData:
    """A hospital of this test's own: its writes leave the shared dataset as it is."""
    return await make_hospital(database_url)


@contextlib.contextmanager
def serve(tmp_path: Path, database_url: str, **settings: str) -> Iterator[Server]:
    port = free_port()
    env = clean_env(
        HMS_DATABASE_URL=database_url,
        HMS_JWT_SECRET=SECRET,
        HMS_PORT=str(port),
        HMS_ENV="prod",
        HMS_READ_TIMEOUT="30",
        HMS_WRITE_TIMEOUT="30",
        **settings,
    )
    log = tmp_path / "serve.log"
    with started([sys.executable, "-m", "hms.cli", "serve"], env, port, log) as (process, url):
        yield process, url, log


@contextlib.asynccontextmanager
async def row_locked(
    database_url: str, hospital: fixtures.HospitalData, patient: Any
) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """Hold ``patient``'s row lock; yield the function that lets go of it."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await conn.execute("BEGIN")
        await conn.execute(
            "SELECT 1 FROM patient WHERE hospital_id = $1 AND id = $2 FOR UPDATE",
            hospital.id,
            patient,
        )

        async def release() -> None:
            await conn.execute("ROLLBACK")

        yield release
    finally:
        if conn.is_in_transaction():
            await conn.execute("ROLLBACK")
        await conn.close()


async def waiting(database_url: str) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return int(await conn.fetchval(WAITING))
    finally:
        await conn.close()


async def until(check: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"not {what} after {seconds:g} s")
        await asyncio.sleep(0.05)


async def refused(url: str) -> bool:
    """Whether a new TCP connection is refused (not merely left waiting in a backlog)."""
    port = int(url.rsplit(":", 1)[1])
    try:
        sock = await asyncio.to_thread(socket.create_connection, ("127.0.0.1", port), 1.0)
        sock.close()
    except ConnectionRefusedError:
        return True
    except OSError:  # a timeout: queued by the kernel, accepted by no one
        return False
    return False


async def exit_code(process: subprocess.Popen[bytes], seconds: float) -> int:
    try:
        return await asyncio.to_thread(process.wait, seconds)
    except subprocess.TimeoutExpired:
        pytest.fail(f"hms serve still running {seconds:g} s after SIGTERM")


def rename(
    client: httpx.AsyncClient, url: str, hospital: fixtures.HospitalData, name: str
) -> asyncio.Task[httpx.Response]:
    """Start ``updatePatient`` on the hospital's first patient (version 1) as a task."""
    body = {
        "query": UPDATE_PATIENT,
        "variables": {
            "input": {
                "id": gid("Patient", hospital.patients[0]),
                "expectedVersion": 1,
                "familyName": name,
            }
        },
    }
    headers = {"Authorization": f"Bearer {token(hospital, 'admin')}"}
    return asyncio.create_task(client.post(f"{url}/graphql", json=body, headers=headers))


async def stored(database_url: str, hospital: fixtures.HospitalData) -> tuple[str, int]:
    (row,) = await rows(
        database_url,
        "SELECT family_name, version FROM patient WHERE hospital_id = $1 AND id = $2",
        hospital.id,
        hospital.patients[0],
    )
    return row["family_name"], row["version"]


async def in_flight_write_finishes(
    server: Server, database_url: str, ward: fixtures.HospitalData
) -> None:
    process, url, log = server
    async with (
        row_locked(database_url, ward, ward.patients[0]) as release,
        httpx.AsyncClient(timeout=30) as client,
    ):
        request = rename(client, url, ward, "Finished")
        await until(lambda: _equals(waiting(database_url), 1), 10, "waiting on the lock")
        process.send_signal(signal.SIGTERM)
        await until(lambda: refused(url), 5, "refusing new connections")
        await asyncio.sleep(0.5)
        assert not request.done(), "the request in flight was cut short"
        assert process.poll() is None
        await release()
        response = await request
    assert response.status_code == 200
    payload = without_cost(response.json())["data"]["updatePatient"]
    assert payload["userErrors"] == []
    assert (payload["patient"]["familyName"], payload["patient"]["version"]) == ("Finished", 2)
    assert await stored(database_url, ward) == ("Finished", 2)
    assert await exit_code(process, 10) == 0
    assert "Traceback" not in log.read_text()


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def test_sigterm_lets_a_write_in_flight_finish(
    tmp_path: Path, database_url: str, ward: fixtures.HospitalData
) -> None:
    with serve(tmp_path, database_url) as server:
        await in_flight_write_finishes(server, database_url, ward)


async def test_workers_drain_the_same_way(
    tmp_path: Path, database_url: str, ward: fixtures.HospitalData
) -> None:
    """Two workers: the supervisor forwards SIGTERM and gives up the listening socket."""
    with serve(tmp_path, database_url, HMS_WORKERS="2", HMS_REDIS_URL=REDIS) as server:
        await in_flight_write_finishes(server, database_url, ward)


async def test_a_request_past_the_shutdown_timeout_is_cut_and_rolled_back(
    tmp_path: Path, database_url: str, ward: fixtures.HospitalData
) -> None:
    with serve(tmp_path, database_url, HMS_SHUTDOWN_TIMEOUT="2") as (process, url, _):
        async with (
            row_locked(database_url, ward, ward.patients[0]),
            httpx.AsyncClient(timeout=30) as client,
        ):
            request = rename(client, url, ward, "Cut")
            await until(lambda: _equals(waiting(database_url), 1), 10, "waiting on the lock")
            signalled = time.monotonic()
            process.send_signal(signal.SIGTERM)
            assert await exit_code(process, 15) == 0
            stopped = time.monotonic() - signalled
            try:
                outcome: int | str = (await request).status_code
            except httpx.TransportError:
                outcome = "disconnected"
            assert outcome in (500, "disconnected")  # 500: uvicorn's answer to a cancelled task
            # The statement ended in PostgreSQL too, while the lock was still held: cancelled by
            # the server, or, if the process exited before its cancel request left, ended by
            # PostgreSQL's check of the closed socket within a second
            # (client_connection_check_interval).
            await until(lambda: _equals(waiting(database_url), 0), 3, "the statement to end")
            assert await waiting(database_url) == 0
    assert 2 <= stopped < 8, stopped
    assert await stored(database_url, ward) == ("Ward", 1)


async def test_readyz_drains_during_the_shutdown_delay(
    tmp_path: Path, database_url: str, dataset: fixtures.Dataset
) -> None:
    headers = {"Authorization": f"Bearer {token(dataset.alpha)}"}
    query = {"query": "{ patientStats { total } }"}
    with (
        serve(tmp_path, database_url, HMS_SHUTDOWN_DELAY="3") as (process, url, _),
    ):
        async with httpx.AsyncClient(timeout=10) as client:
            ready = await client.get(f"{url}/readyz")
            assert (ready.status_code, ready.json()["status"]) == (200, "ready")
            signalled = time.monotonic()
            process.send_signal(signal.SIGTERM)

            async def draining() -> bool:
                answer = await client.get(f"{url}/readyz")
                return answer.status_code == 503 and answer.json() == {"status": "draining"}

            await until(draining, 1, "draining")
            # Only readiness changes: the process is alive and still serves.
            assert (await client.get(f"{url}/healthz")).json() == {"status": "ok"}
            response = await client.post(f"{url}/graphql", json=query, headers=headers)
            assert without_cost(response.json()) == {"data": {"patientStats": {"total": 120}}}
            assert time.monotonic() - signalled < 2.5
            await until(lambda: refused(url), 5, "refusing new connections")
        assert time.monotonic() - signalled >= 3
        assert await exit_code(process, 10) == 0
