"""Schema migrations: Alembic driven from code, so ``hms db upgrade`` needs no alembic.ini.

These are synchronous (Alembic's env runs its own event loop); call them before the server's
loop starts or from a worker thread.

Alembic is imported only when something is to be migrated: loading it and every migration
script takes ~0.3 s, most of a second start of ``hms serve``, which finds the database at the
newest revision nearly every time. ``at_head`` tells that with one query.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

from hms.persistence.urls import async_url, asyncpg_dsn

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
#: Migration files are ``NNNN_what.py`` with ``revision = "NNNN"``, one after the other (no
#: branches); tests/unit/test_migration_head.py checks this against Alembic's own heads.
_NUMBERED = re.compile(r"(\d{4})_\w+\.py")


def head() -> str:
    """The newest revision, from the file names alone (no Alembic import)."""
    return max(
        found.group(1)
        for path in (MIGRATIONS / "versions").iterdir()
        if (found := _NUMBERED.fullmatch(path.name))
    )


def alembic_config(database_url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation would eat '%' in passwords.
    config.set_main_option("sqlalchemy.url", async_url(database_url).replace("%", "%%"))
    return config


async def _current(database_url: str) -> set[str]:
    """The revisions the database is at (Alembic's version table); empty when unmigrated."""
    # No cached statements: the URL may name a transaction pooler (as migrations/env.py).
    conn = await asyncpg.connect(asyncpg_dsn(database_url), statement_cache_size=0)
    try:
        rows = await conn.fetch("SELECT version_num FROM alembic_version")
    except asyncpg.UndefinedTableError:
        return set()
    finally:
        await conn.close()
    return {row["version_num"] for row in rows}


def at_head(database_url: str) -> bool:
    """Whether the database is at this code's newest migration (one query)."""
    return asyncio.run(_current(database_url)) == {head()}


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate to ``revision``; to ``head`` without starting Alembic when already there."""
    if revision == "head" and at_head(database_url):
        return
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(alembic_config(database_url), revision)


def check(database_url: str) -> None:
    """Raise ``alembic.util.CommandError`` if the models differ from the migrated schema."""
    from alembic import command

    command.check(alembic_config(database_url))


def pending(database_url: str) -> bool:
    """Whether the database is behind this code's newest migration (or not migrated at all)."""
    return not at_head(database_url)
