"""The embedded default: a private PostgreSQL 18 that the migrations and the app run on."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from hms.persistence import embedded, migrate
from hms.persistence.urls import asyncpg_dsn


@pytest.fixture(scope="module")
def embedded_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return embedded.start(Path(tmp_path_factory.mktemp("hms-data")))


async def test_embedded_postgres_18_migrates_with_rls(embedded_url: str) -> None:
    await asyncio.to_thread(migrate.upgrade, embedded_url)
    await asyncio.to_thread(migrate.check, embedded_url)
    conn = await asyncpg.connect(asyncpg_dsn(embedded_url))
    try:
        version = await conn.fetchval("SHOW server_version_num")
        forced = await conn.fetchval(
            "SELECT count(*) FROM pg_class WHERE relforcerowsecurity AND relname = ANY($1::text[])",
            ["hospital", "patient", "practitioner", "appointment", "encounter"],
        )
    finally:
        await conn.close()
    assert int(version) >= 180000
    assert forced == 5


def test_start_is_idempotent(embedded_url: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A second start attaches to the running server and the same database."""
    data_dir = Path(embedded_url.split("host=")[1]).parent
    assert embedded.start(data_dir) == embedded_url
