"""``hms serve`` and ``make run`` as a person sees them start and stop.

- What it prints once it listens (the URL, the demo tokens, ``listening on``) works the moment
  it appears: each of those lines is followed at once by a connection that must succeed.
- SIGTERM and Ctrl-C (SIGINT to the whole process group) stop it gracefully with exit status 0,
  also while it is still starting; under ``make run`` no ``make: ***`` line follows.

GNU make, given SIGINT or SIGTERM itself, waits for its child and then ends by the same signal
(its ``fatal_error_signal``): ``make run``'s own status is that signal, which is how a stopped
foreground job should end. What make reports is the child's status: any failure of it, such as
the 143 of a process that exits "by SIGTERM", prints ``make: *** [Makefile:…: run] Error 143``.
So the tests assert the child's clean exit through make's silence.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx
import pytest

from hms.persistence.urls import asyncpg_dsn
from tests.console import ROOT, VENV, Console, console, make_run
from tests.interop.servers import clean_env, free_port

SERVE = [sys.executable, "-m", "hms.cli", "serve"]


@pytest.fixture(scope="module")
async def database(empty_database: Callable[[], Awaitable[str]]) -> str:
    """One throwaway database: the first start migrates it and loads the demo data."""
    return await empty_database()


def _env(database: str, data_dir: Path, port: int, **extra: str) -> dict[str, str]:
    return clean_env(
        HMS_DATABASE_URL=database, HMS_DATA_DIR=str(data_dir), HMS_PORT=str(port), **extra
    )


def _connects(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def _announcement(server: Console, port: int) -> list[str]:
    """Read to ``listening on``; connect the moment each announced line appears."""
    announced = []
    while (line := server.next_line()) is not None:
        if line.startswith(("GraphQL: ", "Demo token (", "listening on ")):
            assert _connects(port), f"{line!r} came before the socket accepted:\n{server.text}"
            announced.append(line)
            if line.startswith("listening on "):
                return announced
    raise AssertionError(f"never listening:\n{server.text}")


def test_what_serve_announces_works_the_moment_it_appears(database: str, tmp_path: Path) -> None:
    port = free_port()
    # The flag wins over the variable: HMS_PORT names a port nobody listens on.
    env = _env(database, tmp_path, free_port())
    with console([*SERVE, "--port", str(port)], env) as server:
        announced = _announcement(server, port)
        base = f"http://127.0.0.1:{port}"
        assert announced[0].startswith(f"GraphQL: {base}/graphql")
        assert [line.split(" (")[1].split(",")[0] for line in announced[1:-1]] == [
            "bayside",
            "harbor-view",
        ]
        assert announced[-1] == f"listening on {base} (Ctrl-C to stop)"
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        assert server.stop(signal.SIGTERM) == 0, server.text
    assert "Traceback" not in server.text


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_serve_stops_gracefully_with_status_0(
    database: str, tmp_path: Path, number: signal.Signals
) -> None:
    port = free_port()
    with console(SERVE, _env(database, tmp_path, port)) as server:
        server.until("^listening on ")
        # As a terminal does: the whole foreground group gets the signal.
        assert server.stop(number) == 0, server.text
    assert "Application shutdown complete" in server.text
    assert "Traceback" not in server.text
    assert "stopped before serving" not in server.text


async def test_a_signal_while_starting_stops_it_with_status_0_and_nothing_half_loaded(
    empty_database: Callable[[], Awaitable[str]], tmp_path: Path
) -> None:
    fresh = await empty_database()  # this test's own, empty: the start loads the demo data

    def start_and_stop() -> tuple[int, str]:
        with console(SERVE, _env(fresh, tmp_path, free_port())) as server:
            server.until("^First start: loading demo data")
            return server.stop(signal.SIGTERM), server.text

    status, text = await asyncio.to_thread(start_and_stop)
    assert status == 0, text
    assert "SIGTERM: stopped before serving" in text
    assert "Traceback" not in text
    assert "listening on" not in text
    conn = await asyncpg.connect(asyncpg_dsn(fresh))
    try:
        # The demo data is loaded in one transaction: nothing of it stays.
        assert await conn.fetchval("SELECT count(*) FROM hospital") == 0
    finally:
        await conn.close()


def test_several_workers_listen_before_they_say_so(database: str, tmp_path: Path) -> None:
    port = free_port()
    env = _env(database, tmp_path, port, HMS_REDIS_URL="redis://127.0.0.1:6379/9")
    with console([*SERVE, "--workers", "2"], env) as server:
        _announcement(server, port)
        # Connections wait in the backlog until the first worker is up, then are answered.
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=60).status_code == 200
        assert server.stop(signal.SIGTERM) == 0, server.text
    assert server.text.count("Finished server process") == 2
    assert "Traceback" not in server.text


def test_a_taken_port_is_said_before_anything_else(database: str, tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*SERVE, "--port", str(port)],
            cwd=ROOT,
            env=_env(database, tmp_path, free_port()),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port} (Address already in use)" in result.stderr
    assert "--port or HMS_PORT" in result.stderr
    assert "PostgreSQL" not in result.stderr  # nothing was started


def test_make_run_uses_the_installed_runtime_as_is() -> None:
    """``make_run`` (tests/console.py) names the Makefile's stamp: nothing would be installed."""
    dry = subprocess.run(
        [*make_run(), "-n"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "pip" not in dry
    assert dry.strip().endswith(f"{VENV}/bin/hms serve")
    # And without -o, a pyproject.toml newer than the stamp would reinstall: it is the stamp.
    stale = subprocess.run(
        ["make", "-n", "-W", "pyproject.toml", "run", f"VENV={VENV}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "pip" in stale
    assert "[dev]" not in stale  # the server's runtime only: dev tools belong to make test


@pytest.mark.parametrize(
    ("number", "group"),
    [(signal.SIGINT, True), (signal.SIGTERM, True), (signal.SIGTERM, False)],
    ids=["Ctrl-C", "SIGTERM to the group", "SIGTERM to make"],
)
def test_make_run_stops_quietly(
    database: str, tmp_path: Path, number: signal.Signals, group: bool
) -> None:
    port = free_port()
    with console(make_run(), _env(database, tmp_path, port)) as server:
        server.until("^listening on ")
        status = server.stop(number, group=group)
    assert "make: ***" not in server.text
    assert "Application shutdown complete" in server.text
    assert "Traceback" not in server.text
    # make ends by the signal it was given, after its child exited 0 (see the module docstring).
    assert status in (0, -number), server.text
