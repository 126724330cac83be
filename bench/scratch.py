"""The benchmark's scratch database: ``hms_bench_<profile>``, seeded once and reused.

A seed of the large profile takes minutes, so a completed one is marked in a ``bench_meta`` table
and later runs reuse it; an interrupted seed leaves no mark and is redone from an empty database.
The database is built with the project's own commands (``hms db upgrade``, ``hms seed``), so the
bench measures the schema and data a user gets.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Sequence

import asyncpg

from hms.security.tokens import issue

#: name -> (hospitals, patients per hospital) for ``hms seed``.
PROFILES = {"small": (2, 5_000), "medium": (2, 50_000), "large": (4, 250_000)}
PATIENT_SAMPLE = 1000


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def dsn(server: str, database: str) -> str:
    """``server`` with its database replaced: the option names a server, we pick the database."""
    return urllib.parse.urlsplit(server)._replace(path=f"/{database}").geturl()


#: Cost budgets no bench load can exhaust: a bench measures the server, not the throttling
#: of one caller (bench/cost.py measures what the cost step itself costs).
UNLIMITED_BUDGETS = {
    "HMS_COST_BUDGETS": "default=1000000000/1000000000",
    "HMS_HOSPITAL_COST_BUDGET": "1000000000/1000000000",
}


def child_env(database_url: str, secret: str, **extra: str) -> dict[str, str]:
    """The environment of ``hms`` children: the caller's ``HMS_*`` are dropped so they cannot
    skew a run (a stray ``HMS_REDIS_URL`` or pool size would change what is measured)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HMS_")}
    return {
        **env,
        **UNLIMITED_BUDGETS,
        "HMS_DATABASE_URL": database_url,
        "HMS_JWT_SECRET": secret,
        **extra,
    }


@dataclasses.dataclass(frozen=True)
class Seed:
    database: str
    url: str
    reused: bool
    seed_seconds: float
    vacuum_seconds: float


def _hms(args: Sequence[str], env: dict[str, str]) -> None:
    """Run an ``hms`` command with the current interpreter, so the venv's code is what runs."""
    subprocess.run([sys.executable, "-m", "hms.cli", *args], env=env, check=True)


async def _existing_seed(server: str, database: str, profile: str) -> asyncpg.Record | None:
    """The ``bench_meta`` row of a completed seed of this profile, or None (absent or stale)."""
    admin = await asyncpg.connect(dsn(server, "postgres"))
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            return None
    finally:
        await admin.close()
    conn = await asyncpg.connect(dsn(server, database))
    try:
        if await conn.fetchval("SELECT to_regclass('bench_meta')") is None:
            return None
        hospitals, patients = PROFILES[profile]
        row: asyncpg.Record | None = await conn.fetchrow(
            "SELECT * FROM bench_meta WHERE hospitals = $1 AND patients = $2", hospitals, patients
        )
        return row
    finally:
        await conn.close()


async def _recreate(server: str, database: str) -> None:
    admin = await asyncpg.connect(dsn(server, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()


async def _settle(url: str, profile: str, seed_seconds: float) -> float:
    """VACUUM, then mark the seed complete; return the VACUUM's seconds.

    Freshly COPYed pages have no hint bits or visibility map, so the first run after a seed would
    write while it reads and the next would not; a VACUUM makes every run start from the same disk.
    """
    hospitals, patients = PROFILES[profile]
    conn = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        await conn.execute("VACUUM (FREEZE, ANALYZE)")
        vacuum = time.perf_counter() - started
        await conn.execute(
            "CREATE TABLE bench_meta (profile text, hospitals int, patients int,"
            " seed_seconds float8, vacuum_seconds float8, seeded_at timestamptz DEFAULT now())"
        )
        await conn.execute(
            "INSERT INTO bench_meta VALUES ($1, $2, $3, $4, $5)",
            profile,
            hospitals,
            patients,
            seed_seconds,
            vacuum,
        )
        return vacuum
    finally:
        await conn.close()


def prepare(server: str, profile: str, secret: str, *, reseed: bool) -> Seed:
    """Migrate, and seed unless a completed seed of this profile is already there."""
    database = f"hms_bench_{profile}"
    url = dsn(server, database)
    env = child_env(url, secret)
    found = None if reseed else asyncio.run(_existing_seed(server, database, profile))
    if found is not None:
        say(f"reusing {database}, seeded {found['seeded_at']:%Y-%m-%d %H:%M} (--reseed to redo)")
        _hms(["db", "upgrade"], env)
        return Seed(database, url, True, found["seed_seconds"], found["vacuum_seconds"])
    hospitals, patients = PROFILES[profile]
    say(f"creating {database}: {hospitals} hospitals x {patients:,} patients")
    asyncio.run(_recreate(server, database))
    _hms(["db", "upgrade"], env)
    started = time.perf_counter()
    _hms(["seed", "--hospitals", str(hospitals), "--patients", str(patients)], env)
    seconds = time.perf_counter() - started
    vacuum = asyncio.run(_settle(url, profile, seconds))
    say(f"seed took {seconds:.1f}s (hms seed, wall clock), VACUUM {vacuum:.1f}s")
    return Seed(database, url, False, seconds, vacuum)


@dataclasses.dataclass(frozen=True)
class Target:
    """Who the load acts as: the first hospital (by slug) and a sample of its patients."""

    slug: str
    hospital_id: uuid.UUID
    patient_ids: list[uuid.UUID]


async def target(url: str) -> Target:
    conn = await asyncpg.connect(url)
    try:
        hospital = await conn.fetchrow("SELECT id, slug FROM hospital ORDER BY slug LIMIT 1")
        if hospital is None:
            raise SystemExit(f"no hospital in {url}; rerun with --reseed")
        # md5 order: a spread-out sample (not one hot index page) that is the same every run.
        rows = await conn.fetch(
            "SELECT id FROM patient WHERE hospital_id = $1 ORDER BY md5(id::text) LIMIT $2",
            hospital["id"],
            PATIENT_SAMPLE,
        )
    finally:
        await conn.close()
    return Target(hospital["slug"], hospital["id"], [row["id"] for row in rows])


@dataclasses.dataclass(frozen=True)
class Setup:
    """What every bench starts from: a fresh secret, the seeded database, whom the load acts
    as, and a clinician's token (the role that reads every field, so documents compile)."""

    secret: str
    seed: Seed
    target: Target
    token: str


def setup(server: str, profile: str, *, reseed: bool = False, needs_hey: bool = False) -> Setup:
    if needs_hey and shutil.which("hey") is None:
        raise SystemExit("needs hey (Debian: apt-get install hey)")
    secret = secrets.token_urlsafe(32)
    seed = prepare(server, profile, secret, reseed=reseed)
    found = asyncio.run(target(seed.url))
    token = issue(secret, subject="bench", hospital_id=found.hospital_id, roles=["clinician"])
    return Setup(secret, seed, found, token)
