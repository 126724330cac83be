"""Alembic environment: runs migrations over asyncpg, comparing against ``hms.models``."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from hms.models.tables import metadata

config = context.config


#: Tables a library owns and migrates itself (PgQueuer's queue, installed by migration 0009):
#: not described in ``hms.models``, so left out of the comparison.
LIBRARY_TABLES = ("pgqueuer",)


def _ours(name: str | None, type_: str, parent_names: object) -> bool:
    return not (type_ == "table" and name is not None and name.startswith(LIBRARY_TABLES))


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_name=_ours,
        compare_type=True,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    # No cached (named) prepared statements: the URL may name a transaction pooler, where one
    # would be left on a server connection for other clients to trip over. A migration runs
    # rarely; preparing each statement anew costs nothing that matters.
    engine = create_async_engine(
        config.get_main_option("sqlalchemy.url") or "",
        connect_args={"statement_cache_size": 0, "prepared_statement_cache_size": 0},
    )
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())
