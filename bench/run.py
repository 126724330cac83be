"""The read benchmark: ``python -m bench.run [--profile small|medium|large] [--duration 10]``.

One command, reproducible: it builds (once) a seeded scratch database per profile, starts the
real server (uvicorn, uvloop, httptools, ``HMS_ENV=prod``) as a subprocess, drives it with the
closed-loop generator of :mod:`bench.load` and prints a Markdown table (JSON goes to
``bench/results/``).

Timings depend on the machine and on whatever else it runs, so they compare only within one run or
between runs on the same idle machine. Statements per request are exact and compare anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import uvloop

from bench import load, report, scratch
from bench.scratch import child_env, dsn, say
from hms.app import create_app
from hms.resolvers.relay import to_global_id
from hms.settings import Settings
from tests.statements import recorded

CONCURRENCY = (1, 16)
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432"
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
#: Requests per workload for the in-process statement count.
STATEMENT_SAMPLES = 3

# The document tests/api/test_batching.py pins at four statements (one per list level).
NESTED_N = 50


def _registered(name: str) -> str:
    """A document of the team's manifest (documents/manifest.json), as the apps send it."""
    manifest = orjson.loads((ROOT / "documents" / "manifest.json").read_bytes())
    (body,) = [op["body"] for op in manifest["operations"] if op["name"] == name]
    return str(body)


#: 50 patients, each with 5 appointments (and their practitioner) and 3 encounters.
NESTED = _registered("Nested")
#: One patient by global id.
PATIENT = _registered("Patient")


# --- workloads ------------------------------------------------------------------------------


def _body(query: str, variables: dict[str, Any]) -> bytes:
    return orjson.dumps({"query": query, "variables": variables})


def workloads(target: scratch.Target) -> list[load.Workload]:
    return [
        load.Workload(
            name=f"nested n={NESTED_N}",
            bodies=[_body(NESTED, {"n": NESTED_N})],
            check=lambda data: len(data["patients"]["edges"]) == NESTED_N,
        ),
        load.Workload(
            name="patient(id)",
            bodies=[
                _body(PATIENT, {"id": to_global_id("Patient", pk)}) for pk in target.patient_ids
            ],
            check=lambda data: data["patient"] is not None,
        ),
    ]


def _prod_settings(url: str, secret: str) -> Settings:
    return Settings(
        env="prod",
        database_url=url,
        jwt_secret=secret,
        graphiql=False,
        introspection=False,
        cost_budgets={"default": (1e9, 1e9)},  # as scratch.UNLIMITED_BUDGETS
        hospital_cost_budget=(1e9, 1e9),
    )


async def count_statements(
    url: str,
    secret: str,
    token: str,
    work: Sequence[load.Workload],
    *,
    execution: str = "compiled",
) -> dict[str, float]:
    """Data statements per request, counted on an in-process app exactly as the tests count them.

    pg_stat_statements would count on the server, but it needs ``shared_preload_libraries`` and a
    restart; the SQLAlchemy cursor hook sees every statement the app sends, which is the same set.
    """
    app = create_app(_prod_settings(url, secret).with_(execution=execution))
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    counts: dict[str, float] = {}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench", headers=headers
        ) as http,
    ):
        for workload in work:
            bodies = [workload.bodies[i % len(workload.bodies)] for i in range(STATEMENT_SAMPLES)]
            await http.post("/graphql", content=bodies[0])  # first use opens the pool
            with recorded(app.state.database.primary) as statements:
                for body in bodies:
                    failure = load.failure(await http.post("/graphql", content=body), workload)
                    if failure is not None:
                        raise SystemExit(f"{workload.name} fails in process: {failure}")
            counts[workload.name] = len(statements) / len(bodies)
    return counts


# --- the server under test ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_command(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "hms.cli:app_factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]


def _wait_healthy(base_url: str, server: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode} before it was healthy")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/healthz", timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    raise SystemExit(f"the server was not healthy within {timeout:.0f}s")


@contextlib.contextmanager
def serving(command: list[str], env: dict[str, str], base_url: str) -> Iterator[int]:
    """Run the server for the block and stop it afterwards, whatever ends the block."""
    server = subprocess.Popen(command, env=env, cwd=ROOT)
    try:
        _wait_healthy(base_url, server)
        yield server.pid
    finally:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


# --- measuring ------------------------------------------------------------------------------


async def measure_all(
    admin_dsn: str,
    database: str,
    server_pid: int,
    base_url: str,
    token: str,
    work: Sequence[load.Workload],
    *,
    warmup: float,
    duration: float,
) -> list[load.Cell]:
    """Every (workload, clients) cell in a fixed order, so runs line up row by row."""
    local = urllib.parse.urlsplit(admin_dsn).hostname in (None, "127.0.0.1", "::1", "localhost")
    admin = await asyncpg.connect(admin_dsn)
    try:
        probe = load.Probe(admin, database, server_pid, local=local)
        cells = []
        for workload in work:
            for n in CONCURRENCY:
                say(f"{workload.name} x {n} clients: {warmup:g}s warm-up, {duration:g}s measured")
                async with load.Clients(base_url, token, n) as clients:
                    cell = await load.measure(
                        probe, clients, workload, warmup=warmup, duration=duration
                    )
                cells.append(cell)
        return cells
    finally:
        await admin.close()


async def _postgres_version(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        version: str = await conn.fetchval("SHOW server_version")
        return version
    finally:
        await conn.close()


# --- the command ----------------------------------------------------------------------------


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    cli = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    cli.add_argument("--profile", choices=sorted(scratch.PROFILES), default="small")
    cli.add_argument("--duration", type=_seconds, default=10.0, help="measured seconds per row")
    cli.add_argument("--warmup", type=_seconds, default=2.0, help="unmeasured seconds per row")
    cli.add_argument(
        "--database-url", default=DEFAULT_SERVER, help="PostgreSQL server as a superuser"
    )
    cli.add_argument("--reseed", action="store_true", help="drop and reseed the scratch database")
    return cli.parse_args(argv)


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so the server is stopped by the ``finally`` that owns it."""
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    signal.signal(signal.SIGTERM, _terminate)
    admin_dsn = dsn(args.database_url, "postgres")
    ready = scratch.setup(args.database_url, args.profile, reseed=args.reseed)
    secret, seed, target, token = ready.secret, ready.seed, ready.target, ready.token
    work = workloads(target)
    statements = uvloop.run(count_statements(seed.url, secret, token, work))
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    command = server_command(port)
    with serving(command, child_env(seed.url, secret, HMS_ENV="prod"), base_url) as pid:
        cells = uvloop.run(
            measure_all(
                admin_dsn,
                seed.database,
                pid,
                base_url,
                token,
                work,
                warmup=args.warmup,
                duration=args.duration,
            )
        )
    cells = [
        dataclasses.replace(cell, statements_per_request=statements[cell.workload])
        for cell in cells
    ]
    defaults = Settings()
    hospitals, patients = scratch.PROFILES[args.profile]
    meta = {
        "machine": report.machine(ROOT, asyncio.run(_postgres_version(admin_dsn))),
        "settings": {
            "profile": args.profile,
            "hospitals": hospitals,
            "patients": patients,
            "duration": args.duration,
            "warmup": args.warmup,
            "concurrency": list(CONCURRENCY),
            "seed": dataclasses.asdict(seed),
            "hospital": target.slug,
            "patient_sample": len(target.patient_ids),
            "server_command": command[1:],
            "server_env": {"HMS_ENV": "prod"},
            "db_pool": {"size": defaults.db_pool_size, "max_overflow": defaults.db_max_overflow},
            "generator": "httpx, one HTTP/1.1 keep-alive connection per client, uvloop, in-process",
        },
    }
    print(report.markdown(cells, meta))
    path = report.write_json(RESULTS, args.profile, meta, cells)
    say(f"wrote {path.relative_to(ROOT)}")
    return 1 if any(cell.errors for cell in cells) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the server was already stopped by serving()'s finally
        say("interrupted")
        sys.exit(130)
