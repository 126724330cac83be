"""Schema migrations: Alembic driven from code, so ``hms db upgrade`` needs no alembic.ini.

These are synchronous (Alembic's env runs its own event loop); call them before the server's
loop starts or from a worker thread.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from hms.persistence.urls import async_url

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation would eat '%' in passwords.
    config.set_main_option("sqlalchemy.url", async_url(database_url).replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)


def check(database_url: str) -> None:
    """Raise ``alembic.util.CommandError`` if the models differ from the migrated schema."""
    command.check(alembic_config(database_url))


def pending(database_url: str) -> bool:
    """Whether the database is behind this code's newest migration (or not migrated at all)."""
    import asyncio

    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy.ext.asyncio import create_async_engine

    heads = set(ScriptDirectory.from_config(alembic_config(database_url)).get_heads())

    async def current() -> set[str]:
        # As in migrations/env.py: nothing prepared is left behind a transaction pooler.
        engine = create_async_engine(
            async_url(database_url),
            connect_args={"statement_cache_size": 0, "prepared_statement_cache_size": 0},
        )
        try:
            async with engine.connect() as conn:
                return set(
                    await conn.run_sync(
                        lambda sync: MigrationContext.configure(sync).get_current_heads()
                    )
                )
        finally:
            await engine.dispose()

    return asyncio.run(current()) != heads
