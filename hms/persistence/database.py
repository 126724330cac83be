"""Engines and the per-request transaction.

Every GraphQL request gets one :class:`RequestDb`: one pooled connection and one transaction,
opened lazily on the first statement (a request that never touches the database never takes a
connection), with the tenant, the unprivileged role and the request's deadline set once, in the
same round trip. Reads run ``REPEATABLE READ READ ONLY`` so every nesting level sees one snapshot.

DataLoader batches are concurrent tasks; an asyncpg connection must never run two statements at
once, so statements go through the connection one at a time behind an ``asyncio.Lock``.

A request database has one life: once :meth:`RequestDb.close` has begun, every statement is
refused with :class:`RequestClosed`. A batch that outlives its request (a sibling resolver
raised, the deadline passed) can never open a second connection and transaction that nothing
would close. Connection-level failures are translated here, once, into
:class:`DatabaseUnavailable` and :class:`StatementTimeout`, which the request pipeline answers as
``SERVICE_UNAVAILABLE`` and ``TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import asyncpg
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind
from sqlalchemy import Executable, Row, event, text
from sqlalchemy.exc import DBAPIError, InterfaceError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncTransaction,
    create_async_engine,
)

from hms.persistence.replicas import AFTER_COMMIT, Replica, Replicas
from hms.persistence.urls import async_url
from hms.settings import Settings

T = TypeVar("T")

#: Created by the first migration; owns nothing, cannot bypass row-level security.
APP_ROLE = "hms_app"

# The single place the tenant is bound to a transaction. set_config(..., true) is
# transaction-local, so it is safe behind PgBouncer in transaction mode and on hot standbys.
# (Citus propagates SET LOCAL but not set_config: switch here, and only here, if sharding.)
# The request's remaining time bounds every statement and any idle wait inside the transaction,
# so PostgreSQL stops work the client can no longer receive, even if the app is stuck.
# JIT costs milliseconds on short OLTP statements and never pays back here; it is turned off
# here rather than only at connect time, which PgBouncer does not allow (~0.2 µs a call).
_BIND_TENANT = text(
    "SELECT set_config('role', :role, true), set_config('app.hospital_id', :hospital_id, true),"
    " set_config('statement_timeout', :timeout_ms, true),"
    " set_config('idle_in_transaction_session_timeout', :timeout_ms, true),"
    " set_config('jit', 'off', true)"
)

#: SQLSTATEs meaning "the server cannot serve right now": connection exceptions (class 08),
#: shutdown or start-up (57P01-57P03), too many connections (53300).
_UNAVAILABLE_STATES = ("08", "57P01", "57P02", "57P03", "53300")
#: query_canceled (statement_timeout) and idle_in_transaction_session_timeout.
_TIMEOUT_STATES = ("57014", "25P03")


#: Engine -> callables given the text of each statement sent past SQLAlchemy (whose own
#: statements its events show); tests count statements with them (tests/statements.py).
OBSERVERS: weakref.WeakKeyDictionary[AsyncEngine, list[Callable[[str], None]]] = (
    weakref.WeakKeyDictionary()
)


class RequestClosed(RuntimeError):
    """A statement was attempted after the request's transaction ended."""

    def __init__(self) -> None:
        super().__init__("the request's transaction has ended; no statement may run on it")


class DatabaseFailure(Exception):
    """The database could not run a statement for reasons outside the request's control."""

    def __init__(self, reason: str, sqlstate: str | None = None) -> None:
        super().__init__(reason if sqlstate is None else f"{reason} (SQLSTATE {sqlstate})")
        self.sqlstate = sqlstate


class DatabaseUnavailable(DatabaseFailure):
    """PostgreSQL cannot be reached, is restarting, or has no connection to give."""


class StatementTimeout(DatabaseFailure):
    """PostgreSQL cancelled a statement at the request's deadline."""


def _sqlstate(error: BaseException) -> str | None:
    # SQLAlchemy wraps the driver's error (``orig``); the compiled path sees asyncpg's own.
    for candidate in (getattr(error, "orig", None), error):
        state = getattr(candidate, "sqlstate", None)
        if isinstance(state, str):
            return state
    return None


def classify(error: BaseException) -> DatabaseFailure | None:
    """The :class:`DatabaseFailure` behind a driver or pool error, or None for other errors.

    The result never carries the driver's message, which can quote row values.
    """
    if isinstance(error, DatabaseFailure):
        return error
    if isinstance(error, PoolTimeout):
        return DatabaseUnavailable("no database connection became free in time")
    if isinstance(error, OSError | ConnectionError):
        return DatabaseUnavailable(f"cannot reach the database ({type(error).__name__})")
    if isinstance(error, asyncpg.InterfaceError | asyncpg.PostgresConnectionError):
        return DatabaseUnavailable(f"the database connection failed ({type(error).__name__})")
    if isinstance(error, DBAPIError | asyncpg.PostgresError):
        state = _sqlstate(error)
        if state is not None and state.startswith(_TIMEOUT_STATES):
            return StatementTimeout("statement cancelled at the request deadline", state)
        if (
            getattr(error, "connection_invalidated", False)
            or isinstance(error, InterfaceError)
            or (state is not None and state.startswith(_UNAVAILABLE_STATES))
        ):
            return DatabaseUnavailable("the database connection failed", state)
    return None


TRACER = trace.get_tracer("hms")
_DB = {"db.system": "postgresql"}
#: Where each connection keeps the text of its latest statement, for its span.
_LAST = "hms.statement"


def _remember(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
    conn.info[_LAST] = statement


def _describe(span: Span, statement: str | None) -> None:
    """Name a statement's span by its verb and attach its text (parameters are never in it)."""
    if statement is None:
        return
    span.update_name(statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "db")
    span.set_attribute("db.statement", statement)


def _engine(url: str, settings: Settings) -> AsyncEngine:
    engine = _new_engine(url, settings)
    event.listen(engine.sync_engine, "before_cursor_execute", _remember)
    return engine


#: What a connection through a transaction pooler must not rely on: a statement prepared in one
#: transaction may be gone (or be another client's) in the next, on another server connection.
#: With its cache off asyncpg (0.29+) prepares every statement unnamed, and Parses it again with
#: each Bind; SQLAlchemy's cache of prepared statements is turned off with it, so each one is
#: prepared in the transaction that runs it. Nothing is left on the server connection after.
_NO_STATEMENT_CACHE = {"statement_cache_size": 0, "prepared_statement_cache_size": 0}


def connect_args(settings: Settings) -> dict[str, Any]:
    """What the request engines pass to asyncpg's ``connect`` for ``settings``."""
    server_settings = {"application_name": "hms"}  # PgBouncer tracks this one
    if settings.database_pooler == "none":
        # Also set per transaction (_BIND_TENANT); as a startup parameter it covers the few
        # statements outside a request's transaction too. PgBouncer refuses it.
        server_settings["jit"] = "off"
        # PostgreSQL polls the client's socket every second while a statement runs, also while
        # it waits on a lock: the statement of a process that died, or that exited before its
        # cancel request left (asyncpg drops pending ones when the pool closes), ends within a
        # second instead of running on, holding its locks, until it tries to answer. (Behind a
        # pooler the backend's client is the pooler, which does not go away.)
        server_settings["client_connection_check_interval"] = "1000"
    args: dict[str, Any] = {
        "server_settings": server_settings,
        "timeout": settings.db_connect_timeout,
    }
    if settings.database_pooler != "none":
        args |= _NO_STATEMENT_CACHE
    return args


def _new_engine(url: str, settings: Settings) -> AsyncEngine:
    return create_async_engine(
        async_url(url),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=False,  # a stale connection is retried once instead (RequestDb)
        # Statement parameters hold names, MRNs and contact data: keep them out of every
        # exception message and log line SQLAlchemy writes.
        hide_parameters=True,
        connect_args=connect_args(settings),
    )


def side_engine(url: str, application_name: str, *, pooled: bool = False) -> AsyncEngine:
    """One connection for a worker's background duty (the audit writer, the sealer), so it
    never takes one from the requests' pool; named, so operators can tell it apart.

    ``pooled``: ``url`` names a transaction pooler, so no statement may be cached. Otherwise the
    cache stays: the audit writer appends a batch for every few reads under load, and each would
    prepare its statement again.
    """
    return create_async_engine(
        async_url(url),
        pool_size=1,
        max_overflow=0,
        hide_parameters=True,
        connect_args={
            "server_settings": {"application_name": application_name},
            **(_NO_STATEMENT_CACHE if pooled else {}),
        },
    )


class Database:
    """The long-lived engines, owned by the app's lifespan: a primary and optional replicas.

    Reads go to a replica that :attr:`routing` finds fit (up, not lagging, past what the reader
    wrote; see :mod:`hms.persistence.replicas`), else to the primary.
    """

    def __init__(
        self,
        primary: AsyncEngine,
        replicas: Sequence[AsyncEngine] = (),
        routing: Replicas | None = None,
    ) -> None:
        self.primary = primary
        self.replicas = tuple(replicas)
        self.routing = routing

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        if settings.database_url is None:
            raise ValueError("database_url must be resolved before the database is opened")
        pooled = settings.database_pooler != "none"
        replicas = [
            Replica(
                f"replica-{i}",
                _engine(url, settings),
                side_engine(url, "hms-replica-check", pooled=pooled),
            )
            for i, url in enumerate(settings.database_replica_urls, 1)
        ]
        routing = None
        if replicas:
            routing = Replicas(
                replicas,
                side_engine(settings.database_url, "hms-replica-check", pooled=pooled),
                max_lag=settings.replica_max_lag_bytes,
            )
        return cls(
            _engine(settings.database_url, settings),
            [replica.engine for replica in replicas],
            routing,
        )

    def request(
        self,
        hospital_id: uuid.UUID | None,
        *,
        readonly: bool,
        timeout: float = 30.0,
        replica: bool = True,
        written: int = 0,
    ) -> RequestDb:
        """A lazily opened transaction for one request, scoped to ``hospital_id``.

        ``None`` binds the empty tenant, under which every policy yields zero rows. ``timeout``
        (seconds from now) is the request's deadline; PostgreSQL enforces what is left of it.
        Read-only requests go to a replica fit to serve them (one that has replayed WAL position
        ``written``, what the reader last wrote), unless ``replica`` is False.
        """
        engine = self.primary
        if readonly and replica and self.routing is not None:
            chosen = self.routing.pick(written)
            if chosen is not None:
                engine = chosen.engine
        deadline = asyncio.get_running_loop().time() + timeout
        return RequestDb(engine, hospital_id, readonly=readonly, deadline=deadline)

    def on_replica(self, db: RequestDb) -> bool:
        return db.engine is not self.primary

    def replica_failed(self, db: RequestDb) -> None:
        """A read on ``db``'s replica failed: out of rotation until it is checked well again."""
        if self.routing is not None:
            self.routing.failed(db.engine)

    def engines(self) -> list[tuple[str, AsyncEngine]]:
        """The request pools, named for metrics (primary, replica-1, …)."""
        named = [("primary", self.primary)]
        return named + [(f"replica-{i}", e) for i, e in enumerate(self.replicas, 1)]

    async def ping(self) -> None:
        """One round trip to the primary; a connection left stale by a restart is retried."""
        for attempt in (1, 2):
            try:
                async with self.primary.connect() as conn:
                    await conn.execute(text("SELECT 1"))
                return
            except DBAPIError as error:
                if not (error.connection_invalidated and attempt == 1):
                    raise

    async def dispose(self) -> None:
        for engine in (self.primary, *self.replicas):
            await engine.dispose()
        if self.routing is not None:
            await self.routing.dispose()


class RequestDb:
    """One connection and one transaction for one request; statements run one at a time."""

    def __init__(
        self,
        engine: AsyncEngine,
        hospital_id: uuid.UUID | None,
        *,
        readonly: bool,
        deadline: float | None = None,
    ) -> None:
        self.engine = engine
        self.hospital_id = hospital_id
        self.readonly = readonly
        self.deadline = deadline
        #: The first database failure of this request: it decides how the request is answered
        #: even when a resolver turned the exception into a field error.
        self.failure: DatabaseFailure | None = None
        self._lock = asyncio.Lock()
        self._conn: AsyncConnection | None = None
        self._tx: AsyncTransaction | None = None
        self._closed = False
        self._holder: asyncio.Task[Any] | None = None
        #: Statements run (not counting the transaction's begin and tenant bind), and how long
        #: the request waited for its connection: for metrics and traces.
        self.statements = 0
        self.waited: float | None = None
        #: After a commit asked to, the WAL position it reached (see :meth:`close`).
        self.committed: int | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def _classify(self, error: BaseException) -> DatabaseFailure | None:
        """:func:`classify`, knowing the deadline: PostgreSQL ends a transaction left idle past
        it by closing the session, so a connection lost once the deadline has passed is the
        deadline's doing (TIMEOUT), not an outage."""
        failure = classify(error)
        if (
            isinstance(failure, DatabaseUnavailable)
            and self.deadline is not None
            and asyncio.get_running_loop().time() >= self.deadline
        ):
            return StatementTimeout("the session ended at the request deadline", failure.sqlstate)
        return failure

    def _timeout_ms(self) -> str:
        if self.deadline is None:
            return "0"  # PostgreSQL's "no limit"
        left = self.deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise StatementTimeout("the request deadline passed before its first statement")
        # Rounded up: PostgreSQL's timers start later than ``left`` was measured, so they fire
        # at the deadline or just after it, never before (see _classify).
        return str(math.ceil(left * 1000))

    async def _open(self) -> AsyncConnection:
        # A pooled connection may be stale after a database restart; SQLAlchemy invalidates it
        # (and every older one) on the first failure, so one retry gets a fresh connection.
        # Nothing has run in the transaction yet, so the retry cannot repeat a write.
        for attempt in (1, 2):
            asked = time.perf_counter()
            conn = await self.engine.connect()
            self.waited = time.perf_counter() - asked
            try:
                if self.readonly:
                    conn = await conn.execution_options(
                        isolation_level="REPEATABLE READ", postgresql_readonly=True
                    )
                tx = await conn.begin()
                await conn.execute(
                    _BIND_TENANT,
                    {
                        "role": APP_ROLE,
                        "hospital_id": "" if self.hospital_id is None else str(self.hospital_id),
                        "timeout_ms": self._timeout_ms(),
                    },
                )
            except BaseException as error:
                await conn.close()
                if attempt == 1 and isinstance(error, DBAPIError) and error.connection_invalidated:
                    continue
                raise
            self._tx = tx
            return conn
        raise AssertionError("unreachable")  # pragma: no cover

    async def _run(self, step: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``step`` on the request's connection, alone, translating connection failures."""
        async with self._lock:
            if self._closed:
                raise RequestClosed()
            self._holder = asyncio.current_task()
            try:
                if self._conn is None:
                    self._conn = await self._open()
                self.statements += 1
                with TRACER.start_as_current_span(
                    "db", kind=SpanKind.CLIENT, attributes=_DB, record_exception=False
                ) as span:
                    result = await step(self._conn)
                    sync = self._conn.sync_connection
                    if span.is_recording() and sync is not None:
                        _describe(span, sync.info.get(_LAST))
                    return result
            except Exception as error:
                failure = self._classify(error)
                if failure is None:
                    raise
                if self.failure is None:
                    self.failure = failure
                raise failure from None
            finally:
                self._holder = None

    async def all(
        self, statement: Executable, params: Mapping[str, Any] | None = None
    ) -> list[Row[Any]]:
        async def step(conn: AsyncConnection) -> list[Row[Any]]:
            result = await conn.execute(statement, params)
            return list(result.all())

        return await self._run(step)

    async def one_or_none(
        self, statement: Executable, params: Mapping[str, Any] | None = None
    ) -> Row[Any] | None:
        rows = await self.all(statement, params)
        return rows[0] if rows else None

    async def scalar(self, statement: Executable, params: Mapping[str, Any] | None = None) -> Any:
        row = await self.one_or_none(statement, params)
        return None if row is None else row[0]

    async def on_driver(self, work: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``work`` with the request's asyncpg connection, inside its transaction (for a
        library that speaks asyncpg itself, such as the job queue)."""

        async def step(conn: AsyncConnection) -> T:
            raw = await conn.get_raw_connection()
            return await work(raw.driver_connection)

        return await self._run(step)

    async def fetch_json(self, sql: str, params: Sequence[Any]) -> tuple[str, bool]:
        """Run a compiled read (``SELECT <data as text>, <ok>``) in a transaction of its own.

        The whole request is this one statement, so it needs none of SQLAlchemy: on the pooled
        connection's asyncpg connection, one round trip opens a READ ONLY transaction and binds
        role, tenant and deadline (a simple-query message may carry several statements; every
        value in it is ours and checked: a UUID, an integer), a second runs the statement
        (prepared once per connection by asyncpg's cache, planned once per connection with a
        generic plan), a third ends the transaction. The JSON comes back as text. If the
        interpreted path must answer after all, it opens a transaction of its own.
        """
        if self.readonly is False:
            raise RuntimeError("compiled reads run in read-only requests only")
        for observe in OBSERVERS.get(self.engine, ()):
            observe(sql)
        async with self._lock:
            if self._closed:
                raise RequestClosed()
            self._holder = asyncio.current_task()
            self.statements += 1
            try:
                with TRACER.start_as_current_span(
                    "db", kind=SpanKind.CLIENT, attributes=_DB, record_exception=False
                ) as span:
                    if span.is_recording():
                        _describe(span, sql)
                    return await self._fetch_json(sql, params)
            except Exception as error:
                failure = self._classify(error)
                if failure is None:
                    raise
                if self.failure is None:
                    self.failure = failure
                raise failure from None
            finally:
                self._holder = None

    async def _fetch_json(self, sql: str, params: Sequence[Any]) -> tuple[str, bool]:
        tenant = "" if self.hospital_id is None else str(uuid.UUID(str(self.hospital_id)))
        timeout = int(self._timeout_ms())
        # Behind a transaction pooler (HMS_DATABASE_POOLER) asyncpg has no statement cache: the
        # statement is then parsed and planned (generic plan all the same) in every request.
        begin = (
            "BEGIN READ ONLY; SELECT"
            f" set_config('role', '{APP_ROLE}', true),"
            f" set_config('app.hospital_id', '{tenant}', true),"
            f" set_config('statement_timeout', '{timeout}', true),"
            f" set_config('idle_in_transaction_session_timeout', '{timeout}', true),"
            " set_config('jit', 'off', true),"
            " set_config('plan_cache_mode', 'force_generic_plan', true)"
        )
        for attempt in (1, 2):
            asked = time.perf_counter()
            conn = await self.engine.connect()
            self.waited = time.perf_counter() - asked
            # Whether the transaction was ended here. SQLAlchemy does not roll back, on return
            # to the pool, a transaction it did not begin: a connection given back inside ours
            # (the request was cancelled during BEGIN, the statement or the ROLLBACK, say by a
            # client that went away) would fail the next request that takes it. Such a
            # connection is discarded instead.
            ended = False
            try:
                raw: Any = (await conn.get_raw_connection()).driver_connection
                try:
                    await raw.execute(begin)
                except (asyncpg.InterfaceError, asyncpg.PostgresConnectionError, OSError):
                    # A connection a database restart left stale: nothing ran yet, retry once.
                    await conn.invalidate()
                    if attempt == 1:
                        continue
                    raise
                try:
                    record = await raw.fetchrow(sql, *params)
                finally:
                    if not raw.is_closed():
                        await raw.execute("ROLLBACK")
                        ended = not raw.is_in_transaction()
                return record[0], record[1]
            finally:
                if not ended:
                    with contextlib.suppress(Exception):
                        await conn.invalidate()
                await conn.close()
        raise AssertionError("unreachable")  # pragma: no cover

    @contextlib.asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """Make the enclosed statements atomic inside the request's transaction.

        Released when the block ends normally, rolled back when it raises: a failed statement
        (say, an exclusion violation) then leaves the outer transaction usable, and a mutation
        field that fails halfway leaves nothing behind.
        """

        async def begin(conn: AsyncConnection) -> Any:
            return await conn.begin_nested()

        nested = await self._run(begin)

        async def end(commit: bool) -> None:
            async def step(conn: AsyncConnection) -> None:
                if nested.is_active:
                    await (nested.commit() if commit else nested.rollback())

            await self._run(step)

        try:
            yield
        except BaseException:
            if not self._closed:
                await end(commit=False)
            raise
        await end(commit=True)

    async def close(self, *, commit: bool = False, position: bool = False) -> None:
        """End the transaction and return the connection; from now on every statement is refused.

        With ``position``, a commit also records in :attr:`committed` the primary's WAL position
        at or past it (for read-your-writes on replicas); a failure to read it leaves None.

        Commits only when asked and only if nothing else is still running on the connection. A
        statement still in flight belongs to work the request abandoned (a batch whose resolver
        failed, a deadline): it is cancelled, which asyncpg forwards to PostgreSQL, and the
        transaction is rolled back. Raises :class:`DatabaseFailure` if the commit fails.
        """
        self._closed = True
        holder = self._holder
        abandoned = holder is not None and holder is not asyncio.current_task()
        if abandoned and holder is not None:
            holder.cancel()
        async with self._lock:
            conn, tx = self._conn, self._tx
            self._conn = self._tx = None
            if conn is None:
                return
            try:
                if tx is not None and tx.is_active:
                    if commit and not abandoned:
                        await tx.commit()
                        if position:
                            with contextlib.suppress(Exception):  # the write stands anyway
                                self.committed = (await conn.execute(AFTER_COMMIT)).scalar()
                    else:
                        await tx.rollback()
            except Exception as error:
                failure = classify(error)
                if failure is None:
                    raise
                raise failure from None
            finally:
                # A connection that just failed may fail to close too; the pool discards it.
                with contextlib.suppress(Exception):
                    await conn.close()
        if commit and abandoned:
            raise RuntimeError("work was still running at commit time; rolled back")
