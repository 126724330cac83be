"""Background connections (audit writer, sealer, replica checks, membership listener) keep their
prepared statements unless they go through a transaction pooler (HMS_DATABASE_POOLER)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from hms.persistence.database import side_engine


async def _cache_size(database_url: str, **options: Any) -> int:
    engine = side_engine(database_url, "hms-test", **options)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            raw: Any = (await conn.get_raw_connection()).driver_connection
            size: int = raw._stmt_cache.get_max_size()
            return size
    finally:
        await engine.dispose()


async def test_a_direct_background_connection_keeps_its_statements(database_url: str) -> None:
    assert await _cache_size(database_url) > 0
    assert await _cache_size(database_url, pooled=True) == 0
