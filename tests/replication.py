"""A real streaming-replication pair for tests that need a hot standby (issue 12).

``streaming_pair()`` builds, in a fresh temporary directory, a dedicated PRIMARY (``initdb``),
migrates it and loads the standard test dataset (:mod:`tests.fixtures`), then clones it with
``pg_basebackup -R -X stream`` into a hot STANDBY that streams from it over 127.0.0.1. It yields a
:class:`ReplicaPair` whose controls really pause replay and really stop and start the standby.
Both servers are stopped and the directory removed on exit, also when setup fails half-way.

Why a dedicated pair rather than the machine's PostgreSQL: that server has no ``replication``
entry in pg_hba.conf (nor a standby to stream to), and tests must not change machine
configuration or restart a server every other test is using. A private cluster is configured for
replication from its first start, costs a few seconds, and may be stopped at will.

Processes. PostgreSQL refuses to run as root, so as root every server and tool runs as the
``postgres`` system user, which owns the directory; otherwise as the current user. Each
postmaster is a child of this process started with ``PR_SET_PDEATHSIG``: a test run killed even
with SIGKILL takes its servers with it. That signal follows the *thread* that started the
server, so start and restart servers from the event loop's thread (the fixtures do).

Consistency. The primary keeps ``synchronous_commit`` on (``fsync`` is off, so it costs nothing):
once a commit returns, its WAL is written, hence covered by ``pg_current_wal_lsn()`` and
streamable, which is what makes :meth:`ReplicaPair.wait_replayed` exact. A replication slot (plus
``wal_keep_size``) keeps the WAL a stopped standby still needs.

Fixtures (tests/integration/conftest.py): ``replica_pair``, one pair per session, and ``replica``,
the same pair put back to running, replaying and caught up around each test.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg

from hms.persistence import migrate
from tests import fixtures
from tests.conftest import NOW
from tests.interop.servers import free_port

#: The app database on the pair (the dataset is loaded into it).
DATABASE = "hms"
#: The system user servers run as when this process is root.
SYSTEM_USER = "postgres"
FALLBACK_BINDIR = Path("/usr/lib/postgresql/15/bin")
SLOT = "hms_standby"
#: Bounds on every wait, in seconds: a server accepting connections (hot standby: consistent),
#: the standby catching up, replay pausing or resuming. Each normally takes well under one.
READY = 30.0
CATCH_UP = 15.0
PAUSE = 10.0

# Appended to the primary's postgresql.conf; pg_basebackup copies it to the standby. Port, socket
# directory and cluster name are per server, on the command line.
CONFIG = """
listen_addresses = '127.0.0.1'
wal_level = replica
max_wal_senders = 5
max_replication_slots = 5
wal_keep_size = '512MB'
hot_standby = on
# Vacuum on the primary must not cancel a test's query on the standby.
hot_standby_feedback = on
# Reconnect at once after the standby restarts (the default waits 5 s between attempts).
wal_retrieve_retry_interval = '100ms'
wal_receiver_status_interval = '1s'
# Throwaway data: durability buys nothing here.
fsync = off
full_page_writes = off
shared_buffers = '32MB'
max_connections = 50
jit = off
"""

HBA = """\
local   all          all                 trust
host    all          all   127.0.0.1/32  trust
local   replication  all                 trust
host    replication  all   127.0.0.1/32  trust
"""


class ServerError(RuntimeError):
    """A PostgreSQL program failed or a server did not become ready; the message has its log."""


def bindir() -> Path:
    """The PostgreSQL server binaries: ``pg_config --bindir``, else the Debian PG 15 path."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        found = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        if (Path(found) / "initdb").exists():
            return Path(found)
    if (FALLBACK_BINDIR / "initdb").exists():
        return FALLBACK_BINDIR
    raise ServerError("no PostgreSQL server binaries (pg_config --bindir, /usr/lib/postgresql/15)")


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking the kernel to SIGQUIT (immediate shutdown) the child when the
    thread that started it dies. ``Popen`` calls it after switching user, as it must be: a change
    of user clears the flag."""
    if not sys.platform.startswith("linux"):
        return None
    # Loaded in the parent: between fork and exec the child makes this one call and no other.
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1

    def preexec() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGQUIT)

    return preexec


class _Tools:
    """Runs PostgreSQL programs from ``bin`` as the owner of ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = bindir()
        self.user: str | None = None
        self.group: int | None = None
        self.extra_groups: list[int] | None = None
        if os.geteuid() == 0:
            entry = pwd.getpwnam(SYSTEM_USER)
            self.user, self.group, self.extra_groups = SYSTEM_USER, entry.pw_gid, []
            os.chown(root, entry.pw_uid, entry.pw_gid)
        # HOME: no ~/.pgpass or ~/.psqlrc of whoever runs the tests; PG*: nothing inherited.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        self.env["HOME"] = str(root)

    def run(self, program: str, *args: str, timeout: float = 60) -> None:
        try:
            subprocess.run(
                [str(self.bin / program), *args],
                check=True,
                capture_output=True,
                cwd=self.root,
                env=self.env,
                user=self.user,
                group=self.group,
                extra_groups=self.extra_groups,
                timeout=timeout,
            )
        except subprocess.CalledProcessError as error:
            output = (error.stdout + error.stderr).decode(errors="replace")
            raise ServerError(f"{program} exited with {error.returncode}:\n{output}") from error
        except subprocess.TimeoutExpired as error:
            raise ServerError(f"{program} did not finish in {timeout:g}s") from error

    def spawn(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                env=self.env,
                user=self.user,
                group=self.group,
                extra_groups=self.extra_groups,
                # Not in the terminal's process group: Ctrl-C reaches pytest, whose teardown
                # then stops the servers (SIGINT to a postmaster would already shut it down).
                start_new_session=True,
                preexec_fn=_die_with_parent(),
            )


class _Server:
    """One data directory and, while it runs, its postmaster (a child process of this one)."""

    def __init__(self, name: str, tools: _Tools) -> None:
        self.name = name
        self.tools = tools
        self.data = tools.root / name
        self.log = tools.root / f"{name}.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    async def start(self) -> None:
        """Start the postmaster and return once it accepts connections (a hot standby: once it
        is consistent). The first start picks a free port, retrying if another process takes it
        first; later starts keep the port, since URLs with it were handed out."""
        for _ in range(5):
            fixed = self.port != 0
            if not fixed:
                self.port = free_port()
            logged = self.log.stat().st_size if self.log.exists() else 0
            self.process = self.tools.spawn(
                [
                    str(self.tools.bin / "postgres"),
                    *("-D", str(self.data), "-p", str(self.port), "-k", str(self.tools.root)),
                    *("-c", f"cluster_name=hms_{self.name}"),
                ],
                self.log,
            )
            try:
                async with _within(READY, f"{self.name} accepting connections", self.log_tail):
                    await self._accepting()
                return
            except (ServerError, TimeoutError):
                self.kill()
                with self.log.open("rb") as log:
                    log.seek(logged)
                    taken = b"Address already in use" in log.read()
                if fixed or not taken:
                    raise
                self.port = 0
        raise ServerError(f"{self.name}: no free port after 5 attempts")

    async def _accepting(self) -> None:
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise ServerError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                conn = await asyncpg.connect(self.dsn("postgres"), timeout=2)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                # Refused while starting; "the database system is starting up" until consistent.
                await asyncio.sleep(0.05)
            else:
                await conn.close()
                return

    def stop(self) -> None:
        """``pg_ctl stop -m fast``: what an operator does; blocks until the process is gone."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.tools.run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w", "-t", "30")
        self.process.wait(timeout=30)
        self.process = None

    def kill(self) -> None:
        """Immediate shutdown (SIGQUIT, then SIGKILL if that hangs): for teardown and failed
        starts, where the data is thrown away."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                # Backends exit by themselves once they notice the postmaster is gone.
                self.process.kill()
                self.process.wait()
        self.process = None


@contextlib.asynccontextmanager
async def _connected(url: str) -> AsyncIterator[Any]:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        yield conn
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def _within(
    seconds: float, waiting_for: str, log: Callable[[], str] = str
) -> AsyncIterator[None]:
    """``asyncio.timeout``, raising a ``TimeoutError`` that says what did not happen and shows
    the relevant server log."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError as error:
        raise TimeoutError(f"no {waiting_for} after {seconds:g}s\n{log()}".rstrip()) from error


async def _until(conn: Any, query: str, *args: object) -> None:
    """Poll ``query`` (one boolean) on ``conn`` until it is true; bound it with ``_within``."""
    # Polling: PostgreSQL signals none of these states (replayed up to, paused) to a client.
    while True:
        if await conn.fetchval(query, *args) is True:
            return
        await asyncio.sleep(0.02)


class ReplicaPair:
    """A running primary and hot standby of the app database, with the standard test dataset.

    Every control returns once its effect is observable: replay *is* paused, the standby *is*
    down, or up and caught up. The standby's URL stays the same across restarts.
    """

    def __init__(self, primary: _Server, standby: _Server, dataset: fixtures.Dataset) -> None:
        self._primary = primary
        self._standby = standby
        #: The hospitals and rows ``tests.fixtures.load`` put on the primary.
        self.dataset = dataset
        self.database = DATABASE
        #: Where the data directories and the two server logs live.
        self.root = primary.tools.root

    @property
    def primary_url(self) -> str:
        return self._primary.dsn(DATABASE)

    @property
    def standby_url(self) -> str:
        return self._standby.dsn(DATABASE)

    def primary_dsn(self, database: str) -> str:
        """Another database on the primary (like ``tests.conftest.dsn``); it replicates too."""
        return self._primary.dsn(database)

    def standby_dsn(self, database: str) -> str:
        return self._standby.dsn(database)

    @property
    def standby_running(self) -> bool:
        return self._standby.running

    async def pause_replay(self) -> None:
        """``pg_wal_replay_pause()``; returns once the standby reports replay ``paused``. WAL is
        still received meanwhile, only not applied: new commits stay invisible there."""
        async with _connected(self._standby.dsn("postgres")) as conn:
            await conn.execute("SELECT pg_wal_replay_pause()")
            async with _within(PAUSE, "paused replay", self._standby.log_tail):
                await _until(conn, "SELECT pg_get_wal_replay_pause_state() = 'paused'")

    async def resume_replay(self) -> None:
        async with _connected(self._standby.dsn("postgres")) as conn:
            await conn.execute("SELECT pg_wal_replay_resume()")
            async with _within(PAUSE, "resumed replay", self._standby.log_tail):
                await _until(conn, "SELECT pg_get_wal_replay_pause_state() = 'not paused'")

    async def stop_standby(self) -> None:
        """``pg_ctl stop -m fast``; afterwards connections to the standby are refused."""
        await asyncio.to_thread(self._standby.stop)

    async def start_standby(self) -> None:
        """Start the standby again (same port) and return once it accepts connections and has
        replayed everything the primary wrote meanwhile. A no-op start if it is running."""
        if not self._standby.running:
            await self._standby.start()
        await self.wait_replayed()

    async def wait_replayed(self) -> str:
        """Wait until the standby's ``pg_last_wal_replay_lsn()`` reaches the primary's
        ``pg_current_wal_lsn()`` as of this call, so every commit that returned before the call
        is visible on the standby. Returns that LSN. Raises at once if replay is paused."""
        async with _connected(self._primary.dsn("postgres")) as primary:
            target: str = await primary.fetchval("SELECT pg_current_wal_lsn()::text")
        async with _connected(self._standby.dsn("postgres")) as standby:
            state = await standby.fetchval("SELECT pg_get_wal_replay_pause_state()")
            if state != "not paused":
                raise RuntimeError(f"standby replay is {state}: resume_replay() first")
            async with _within(CATCH_UP, f"replay up to {target}", self._standby.log_tail):
                await _until(standby, "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", target)
        return target

    async def restore(self) -> None:
        """Back to the normal state whatever a test left: standby running, replaying, caught up."""
        await self.start_standby()
        async with _connected(self._standby.dsn("postgres")) as conn:
            paused = await conn.fetchval("SELECT pg_get_wal_replay_pause_state() <> 'not paused'")
        if paused:
            await self.resume_replay()
        await self.wait_replayed()


@contextlib.asynccontextmanager
async def streaming_pair() -> AsyncIterator[ReplicaPair]:
    """A fresh primary and streaming hot standby, migrated, loaded and caught up (see module)."""
    root = Path(tempfile.mkdtemp(prefix="hms-replication-"))
    primary: _Server | None = None
    standby: _Server | None = None
    try:
        tools = _Tools(root)
        primary, standby = _Server("primary", tools), _Server("standby", tools)
        await asyncio.to_thread(
            tools.run,
            "initdb",
            *("-D", str(primary.data), "-U", "postgres", "--auth=trust"),
            *("-E", "UTF8", "--locale=C.UTF-8", "--no-sync", "--no-instructions"),
        )
        with (primary.data / "postgresql.conf").open("a") as conf:
            conf.write(CONFIG)
        (primary.data / "pg_hba.conf").write_text(HBA)
        await primary.start()

        async with _connected(primary.dsn("postgres")) as conn:
            await conn.execute(f'CREATE DATABASE "{DATABASE}"')
        await asyncio.to_thread(migrate.upgrade, primary.dsn(DATABASE))
        dataset = await fixtures.load(primary.dsn(DATABASE), NOW)

        await asyncio.to_thread(
            tools.run,
            "pg_basebackup",
            *("-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres"),
            *("-D", str(standby.data), "-R", "-X", "stream", "-C", "-S", SLOT),
            *("--checkpoint=fast", "--no-sync", "--no-manifest"),
        )
        await standby.start()
        pair = ReplicaPair(primary, standby, dataset)
        await pair.wait_replayed()
        yield pair
    finally:
        for server in (standby, primary):
            if server is not None:
                server.kill()
        shutil.rmtree(root, ignore_errors=True)
