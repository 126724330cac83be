"""The streaming-replication harness (tests/replication.py) does what replica tests rely on: a
real hot standby that lags when told to, refuses writes, goes down and comes back, and enforces
row-level security exactly like the primary."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from tests.replication import ReplicaPair

#: Probe rows go to a database of their own, so the app database stays exactly as migrated and
#: loaded for the replica tests that share the pair.
PROBE = "harness_probe"


@pytest.fixture(scope="module")
async def probe(replica_pair: ReplicaPair) -> tuple[str, str]:
    """The probe database's URLs on the primary and on the standby."""
    admin = await asyncpg.connect(replica_pair.primary_dsn("postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{PROBE}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(replica_pair.primary_dsn(PROBE))
    try:
        await conn.execute("CREATE TABLE note (id serial PRIMARY KEY, body text NOT NULL)")
    finally:
        await conn.close()
    await replica_pair.wait_replayed()
    return replica_pair.primary_dsn(PROBE), replica_pair.standby_dsn(PROBE)


@contextlib.asynccontextmanager
async def _connect(url: str) -> AsyncIterator[Any]:
    conn = await asyncpg.connect(url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def primary(probe: tuple[str, str]) -> AsyncIterator[Any]:
    """A connection to the probe database on the primary."""
    async with _connect(probe[0]) as conn:
        yield conn


async def _note(conn: Any) -> str:
    body = uuid.uuid4().hex
    await conn.execute("INSERT INTO note (body) VALUES ($1)", body)
    return body


async def _has(url: str, body: str) -> bool:
    async with _connect(url) as conn:
        return bool(await conn.fetchval("SELECT count(*) = 1 FROM note WHERE body = $1", body))


async def test_a_committed_row_is_on_the_standby_once_replayed(
    replica: ReplicaPair, probe: tuple[str, str], primary: Any
) -> None:
    body = await _note(primary)
    await replica.wait_replayed()
    assert await _has(probe[1], body)


async def test_paused_replay_hides_new_rows_until_resumed(
    replica: ReplicaPair, probe: tuple[str, str], primary: Any
) -> None:
    await replica.pause_replay()
    body = await _note(primary)
    target = await primary.fetchval("SELECT pg_current_wal_lsn()::text")
    async with _connect(probe[1]) as standby:
        # The standby has *received* the commit: only the paused replay keeps it invisible.
        received = "SELECT pg_last_wal_receive_lsn() >= $1::text::pg_lsn"
        for _ in range(500):
            if await standby.fetchval(received, target):
                break
            await asyncio.sleep(0.01)
        assert await standby.fetchval(received, target)
    assert await _has(probe[0], body)
    assert not await _has(probe[1], body)
    with pytest.raises(RuntimeError, match="paused"):
        await replica.wait_replayed()

    await replica.resume_replay()
    await replica.wait_replayed()
    assert await _has(probe[1], body)


async def test_the_standby_refuses_writes(replica: ReplicaPair, probe: tuple[str, str]) -> None:
    async with _connect(probe[1]) as conn:
        assert await conn.fetchval("SELECT pg_is_in_recovery()") is True
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await _note(conn)
    async with _connect(replica.standby_url) as conn:
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await conn.execute("UPDATE patient SET active = NOT active")


async def test_a_stopped_standby_refuses_connections_and_catches_up_after_start(
    replica: ReplicaPair, probe: tuple[str, str], primary: Any
) -> None:
    await replica.stop_standby()
    assert not replica.standby_running
    with pytest.raises(ConnectionRefusedError):
        await asyncpg.connect(probe[1], timeout=5)
    body = await _note(primary)  # written while the standby is down

    await replica.start_standby()
    assert replica.standby_running
    assert await _has(probe[1], body)


@pytest.mark.parametrize("hospital", ["alpha", "beta"])
async def test_row_level_security_holds_on_the_standby(replica: ReplicaPair, hospital: str) -> None:
    tenant = getattr(replica.dataset, hospital).id
    async with _connect(replica.primary_url) as conn:
        # The owner (a superuser) bypasses RLS: the truth to compare the standby with.
        expected = await conn.fetchval(
            "SELECT count(*) FROM patient WHERE hospital_id = $1", tenant
        )
    # At least the dataset's (other tests on the shared pair may have added patients).
    assert expected >= len(getattr(replica.dataset, hospital).patients) > 0

    async with _connect(replica.standby_url) as conn:
        async with conn.transaction():
            # As the app binds a tenant (hms/persistence/database.py): the NOLOGIN app role
            # for this transaction only, and the hospital as a transaction-local setting.
            await conn.execute(
                "SELECT set_config('role', 'hms_app', true),"
                " set_config('app.hospital_id', $1, true)",
                str(tenant),
            )
            assert await conn.fetchval("SELECT current_user") == "hms_app"
            rows = await conn.fetch("SELECT hospital_id, count(*) FROM patient GROUP BY 1")
            assert [(row[0], row[1]) for row in rows] == [(tenant, expected)]
            assert await conn.fetchval("SELECT count(*) FROM hospital") == 1

        async with conn.transaction():
            await conn.execute("SELECT set_config('role', 'hms_app', true)")
            assert await conn.fetchval("SELECT count(*) FROM patient") == 0
            assert await conn.fetchval("SELECT count(*) FROM hospital") == 0
