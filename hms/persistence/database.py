"""Engines and the per-request transaction.

Every GraphQL request gets one :class:`RequestDb`: one pooled connection and one transaction,
opened lazily on the first statement (a request that never touches the database never takes a
connection), with the tenant and the unprivileged role set once, in the same round trip. Reads
run ``REPEATABLE READ READ ONLY`` so every nesting level sees one snapshot.

DataLoader batches are concurrent tasks; an asyncpg connection must never run two statements at
once, so statements go through the connection one at a time behind an ``asyncio.Lock``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from sqlalchemy import Executable, Row, text
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncTransaction,
    create_async_engine,
)

from hms.persistence.urls import async_url
from hms.settings import Settings

#: Created by the first migration; owns nothing, cannot bypass row-level security.
APP_ROLE = "hms_app"

# The single place the tenant is bound to a transaction. set_config(..., true) is
# transaction-local, so it is safe behind PgBouncer in transaction mode and on hot standbys.
# (Citus propagates SET LOCAL but not set_config: switch here, and only here, if sharding.)
_BIND_TENANT = text(
    "SELECT set_config('role', :role, true), set_config('app.hospital_id', :hospital_id, true)"
)


def _engine(url: str, settings: Settings) -> AsyncEngine:
    return create_async_engine(
        async_url(url),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=False,
        connect_args={
            # JIT costs milliseconds on short OLTP statements and never pays back here.
            "server_settings": {"jit": "off", "application_name": "hms"},
        },
    )


class Database:
    """The long-lived engines, owned by the app's lifespan: a primary and optional replicas."""

    def __init__(self, primary: AsyncEngine, replicas: Sequence[AsyncEngine] = ()) -> None:
        self.primary = primary
        self.replicas = tuple(replicas)
        self._next_replica = itertools.cycle(self.replicas) if self.replicas else None

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        if settings.database_url is None:
            raise ValueError("database_url must be resolved before the database is opened")
        return cls(
            _engine(settings.database_url, settings),
            [_engine(url, settings) for url in settings.database_replica_urls],
        )

    def request(self, hospital_id: uuid.UUID | None, *, readonly: bool) -> RequestDb:
        """A lazily opened transaction for one request, scoped to ``hospital_id``.

        ``None`` binds the empty tenant, under which every policy yields zero rows.
        """
        engine = self.primary
        if readonly and self._next_replica is not None:
            engine = next(self._next_replica)
        return RequestDb(engine, hospital_id, readonly=readonly)

    async def ping(self) -> None:
        async with self.primary.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        for engine in (self.primary, *self.replicas):
            await engine.dispose()


class RequestDb:
    """One connection and one transaction for one request; statements run one at a time."""

    def __init__(
        self, engine: AsyncEngine, hospital_id: uuid.UUID | None, *, readonly: bool
    ) -> None:
        self.engine = engine
        self.hospital_id = hospital_id
        self.readonly = readonly
        self._lock = asyncio.Lock()
        self._conn: AsyncConnection | None = None
        self._tx: AsyncTransaction | None = None

    async def _connection(self) -> AsyncConnection:
        if self._conn is None:
            conn = await self.engine.connect()
            try:
                if self.readonly:
                    conn = await conn.execution_options(
                        isolation_level="REPEATABLE READ", postgresql_readonly=True
                    )
                self._tx = await conn.begin()
                await conn.execute(
                    _BIND_TENANT,
                    {
                        "role": APP_ROLE,
                        "hospital_id": "" if self.hospital_id is None else str(self.hospital_id),
                    },
                )
            except BaseException:
                await conn.close()
                raise
            self._conn = conn
        return self._conn

    async def all(
        self, statement: Executable, params: dict[str, Any] | None = None
    ) -> list[Row[Any]]:
        async with self._lock:
            conn = await self._connection()
            result = await conn.execute(statement, params)
            return list(result.all())

    async def one_or_none(
        self, statement: Executable, params: dict[str, Any] | None = None
    ) -> Row[Any] | None:
        rows = await self.all(statement, params)
        return rows[0] if rows else None

    async def scalar(self, statement: Executable, params: dict[str, Any] | None = None) -> Any:
        row = await self.one_or_none(statement, params)
        return None if row is None else row[0]

    @contextlib.asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """Make the enclosed statements atomic inside the request's transaction.

        Released when the block ends normally, rolled back when it raises: a failed statement
        (say, an exclusion violation) then leaves the outer transaction usable, and a mutation
        field that fails halfway leaves nothing behind while earlier fields stay written.
        """
        async with self._lock:
            conn = await self._connection()
            nested = await conn.begin_nested()
        try:
            yield
        except BaseException:
            async with self._lock:
                if nested.is_active:
                    await nested.rollback()
            raise
        async with self._lock:
            if nested.is_active:
                await nested.commit()

    async def close(self, *, commit: bool = False) -> None:
        """End the transaction (commit only when asked) and return the connection to the pool."""
        async with self._lock:
            conn, tx = self._conn, self._tx
            self._conn = self._tx = None
            if conn is None:
                return
            try:
                if tx is not None and tx.is_active:
                    if commit:
                        await tx.commit()
                    else:
                        await tx.rollback()
            finally:
                await conn.close()
