"""Load synthetic hospitals into PostgreSQL with binary COPY: the engine behind ``hms seed``.

``load`` adds new hospitals (slugs never collide with existing ones) with their practitioners,
patients, appointments and encounters, in ONE transaction: a failure leaves the database as it
was. The rows come from :mod:`hms.persistence.synthetic` and are deterministic for a seed.

It needs a role that bypasses row-level security (a superuser or a ``BYPASSRLS`` role, as
``HMS_DATABASE_URL`` usually names): the tenant tables ``FORCE`` RLS, and PostgreSQL refuses
``COPY FROM`` into a table with RLS for any role subject to it. ``load`` checks this up front.

Why it is fast enough for a million patients on two cores:

* asyncpg's binary COPY encodes in C, and the row generators are consumed lazily while COPY
  streams, so PostgreSQL ingests one chunk while Python produces the next.
* Above ``rebuild_threshold`` appointments, the B-tree keys and indexes and the foreign keys,
  which COPY would otherwise maintain row by row (a B-tree insert per index, a trigger query per
  reference), are dropped first and rebuilt once at the end, each by one sort or one join.
  Their DDL is compiled from the SQLAlchemy tables, the source the migrations come from too, so
  the rebuilt schema is the migrated one. This holds exclusive locks on the tenant tables until
  commit: a server reading them waits, so bulk-seed a database nobody is using.
* The no-double-booking exclusion constraint stays. Re-adding it costs a GiST build plus one
  conflict search per appointment, about what maintaining it costs, but maintenance happens
  during COPY, overlapping with Python generating rows (1M patients: 410 s against 460 s).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence

import asyncpg
from sqlalchemy import (
    Constraint,
    ForeignKeyConstraint,
    Index,
    PrimaryKeyConstraint,
    Table,
    UniqueConstraint,
)
from sqlalchemy.dialects import registry
from sqlalchemy.schema import (
    AddConstraint,
    CreateIndex,
    DropConstraint,
    DropIndex,
    ExecutableDDLElement,
)

from hms.models.tables import appointment, encounter, hospital, metadata, patient, practitioner
from hms.persistence import synthetic
from hms.persistence.urls import asyncpg_dsn

#: Rebuild keys, indexes and constraints when a load adds at least this many appointments.
REBUILD_THRESHOLD = 200_000
#: Appointments (plus encounters) per COPY round; bounds the encounters held in memory.
CHUNK_ROWS = 50_000
#: Tables whose keys, indexes and constraints a big load rebuilds (practitioners are few).
REBUILT_TABLES = (patient, appointment, encounter)
#: A crash loses nothing but a rerunnable load: don't wait for WAL flushes. Index builds sort,
#: and foreign-key validations hash-join, in memory.
SESSION_SETTINGS = {
    "synchronous_commit": "off",
    "maintenance_work_mem": "512MB",
    "work_mem": "256MB",
}
ALL_TABLES = ("hospital", "practitioner", "patient", "appointment", "encounter")


class SeedError(RuntimeError):
    """The database cannot be seeded as asked (e.g. the role is subject to row-level security)."""


@dataclasses.dataclass(frozen=True, slots=True)
class SeedReport:
    """What one ``load`` added; ``str()`` is the one-line summary the CLI prints."""

    hospitals: int
    practitioners: int
    patients: int
    appointments: int
    encounters: int
    seconds: float
    hospital_slugs: tuple[str, ...] = ()
    hospital_ids: tuple[uuid.UUID, ...] = ()

    def __str__(self) -> str:
        plural = "" if self.hospitals == 1 else "s"
        return (
            f"seeded {self.hospitals} hospital{plural}: {self.patients:,} patients, "
            f"{self.practitioners:,} practitioners, {self.appointments:,} appointments, "
            f"{self.encounters:,} encounters in {self.seconds:.1f}s"
        )


def rebuild_ddl(tables: Sequence[Table] = REBUILT_TABLES) -> tuple[list[str], list[str]]:
    """``(drop, create)`` DDL for the keys, B-tree indexes and foreign keys of ``tables``.

    Foreign keys that point INTO these tables from elsewhere are included, since a primary key
    cannot be dropped under them. Drop order: foreign keys, indexes, keys; create order is the
    reverse, so every foreign key finds its referenced key rebuilt. CHECKs stay (they cost little
    per row), and so do exclusion constraints (see the module docstring).
    """
    rebuilt = set(tables)
    foreign = sorted(
        (
            constraint
            for table in metadata.sorted_tables
            for constraint in table.constraints
            if isinstance(constraint, ForeignKeyConstraint)
            and (table in rebuilt or constraint.referred_table in rebuilt)
        ),
        key=lambda constraint: str(constraint.name),
    )
    keys: list[Constraint] = []
    indexes: list[Index] = []
    for table in tables:
        keys += sorted(
            (
                c
                for c in table.constraints
                if isinstance(c, PrimaryKeyConstraint | UniqueConstraint)
            ),
            key=lambda constraint: str(constraint.name),
        )
        indexes += sorted(table.indexes, key=lambda index: str(index.name))
    dialect = registry.load("postgresql")()
    drop: list[ExecutableDDLElement] = [
        *(DropConstraint(c) for c in foreign),
        *(DropIndex(index) for index in indexes),
        *(DropConstraint(c) for c in keys),
    ]
    create: list[ExecutableDDLElement] = [
        *(AddConstraint(c) for c in keys),
        *(CreateIndex(index) for index in indexes),
        *(AddConstraint(c) for c in foreign),
    ]
    return (
        [str(ddl.compile(dialect=dialect)).strip() for ddl in drop],
        [str(ddl.compile(dialect=dialect)).strip() for ddl in create],
    )


class _Progress:
    """A single redrawn stderr line: ``appointments [#####-----] 1,234/5,000  98,765 rows/s``.

    The bar is the table being copied; the rate counts rows of all tables since the start,
    because appointment and encounter COPYs alternate. Disabled, it only counts.
    """

    def __init__(self, enabled: bool, totals: dict[str, int]) -> None:
        self.enabled, self.totals = enabled, totals
        self.done = dict.fromkeys(totals, 0)
        self.started = self.drawn = time.perf_counter()
        self.width = 0

    def counted(self, table: str, rows: Iterable[synthetic.Row]) -> Iterator[synthetic.Row]:
        n = 0
        for row in rows:
            yield row
            n += 1
            if n == 4096:
                self.add(table, n)
                n = 0
        self.add(table, n, draw=True)

    def add(self, table: str, n: int, *, draw: bool = False) -> None:
        """Count ``n`` more rows of ``table``; redraw at most ten times a second, or if ``draw``."""
        self.done[table] += n
        now = time.perf_counter()
        if self.enabled and (draw or now - self.drawn >= 0.1):
            self.drawn = now
            done, total = self.done[table], self.totals[table]
            filled = 20 * min(done, total) // max(total, 1)
            rate = sum(self.done.values()) / max(now - self.started, 1e-9)
            bar = "#" * filled + "-" * (20 - filled)
            self.show(f"{table + 's':<12} [{bar}] {done:>11,}/{total:,}  {rate:>9,.0f} rows/s")

    def show(self, line: str) -> None:
        if self.enabled:
            self.width = max(self.width, len(line))
            print(f"\r{line:<{self.width}}", end="", file=sys.stderr, flush=True)

    def end(self, note: str = "") -> None:
        """Finish the current line (appending ``note``), so the next one starts below it."""
        if self.enabled and self.width:
            print(note, file=sys.stderr, flush=True)
            self.width = 0


#: Columns synthetic rows never set: their defaults apply (no encrypted national ids, nobody
#: confidential).
LEFT_TO_DEFAULTS = frozenset({"national_id_enc", "confidential"})


async def _copy(
    conn: asyncpg.Connection, table: Table, rows: Iterable[synthetic.Row], progress: _Progress
) -> int:
    columns = [column.name for column in table.columns if column.name not in LEFT_TO_DEFAULTS]
    if table.name in progress.done:
        rows = progress.counted(table.name, rows)
    status = await conn.copy_records_to_table(table.name, records=rows, columns=columns)
    return int(status.split()[-1])  # "COPY <n>"


async def _check_role(conn: asyncpg.Connection) -> None:
    bypasses = await conn.fetchval(
        "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user"
    )
    if not bypasses:
        user = await conn.fetchval("SELECT current_user")
        raise SeedError(
            f"role {user!r} is subject to row-level security, which refuses COPY into the tenant"
            " tables; seed with a superuser or a role WITH BYPASSRLS"
        )


async def load(
    database_url: str,
    *,
    hospitals: int,
    patients_per_hospital: int,
    rng_seed: int = 1,
    progress: bool = False,
    now: dt.datetime | None = None,
    rebuild_threshold: int = REBUILD_THRESHOLD,
) -> SeedReport:
    """Add ``hospitals`` hospitals of ``patients_per_hospital`` patients each; report the counts.

    Per hospital: one practitioner per 50 patients (at least 5), about 5 appointments and 3
    encounters per patient, scheduled around ``now`` (default: the wall clock). The same
    ``rng_seed`` and ``now`` on a database with the same hospital slugs give identical rows;
    names and MRNs do not depend on ``now``. ``progress`` draws a bar on stderr.
    ``rebuild_threshold`` is the appointment count from which keys and indexes are rebuilt
    rather than maintained (see the module docstring).
    """
    if hospitals < 0 or patients_per_hospital < 0:
        raise ValueError("hospitals and patients_per_hospital must not be negative")
    if now is not None and now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    started = time.perf_counter()
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    conn = await asyncpg.connect(asyncpg_dsn(database_url), server_settings=SESSION_SETTINGS)
    try:
        await _check_role(conn)
        async with conn.transaction():
            # Serialise concurrent seeders on slug choice; readers are not blocked.
            await conn.execute("LOCK TABLE hospital IN SHARE ROW EXCLUSIVE MODE")
            taken = {row["slug"] for row in await conn.fetch("SELECT slug FROM hospital")}
            plans = synthetic.plan_hospitals(taken, hospitals, patients_per_hospital, rng_seed, now)
            patients = sum(plan.patients for plan in plans)
            totals = {
                "patient": patients,
                "appointment": synthetic.APPOINTMENTS_PER_PATIENT * patients,
                "encounter": synthetic.ENCOUNTERS_PER_PATIENT * patients,
            }
            bar = _Progress(progress, totals)
            rebuild = totals["appointment"] >= rebuild_threshold
            drop, create = rebuild_ddl() if rebuild else ([], [])
            if rebuild:
                # Children copy a patient's confidential label by trigger, a lookup per row by
                # the primary key that is being dropped. Synthetic patients are never
                # confidential, so the children's default (false) is already the label.
                for table in ("appointment", "encounter"):
                    drop.append(f"ALTER TABLE {table} DISABLE TRIGGER {table}_confidential")
                    create.append(f"ALTER TABLE {table} ENABLE TRIGGER {table}_confidential")
            for statement in drop:
                await conn.execute(statement)
            counts = await _copy_all(conn, plans, now, bar)
            bar.end(f"  copied in {time.perf_counter() - started:.1f}s")
            rebuilding = time.perf_counter()
            for step, statement in enumerate(create, 1):
                bar.show(f"rebuilding keys, indexes and constraints: {step}/{len(create)}")
                await conn.execute(statement)
            bar.end(f", done in {time.perf_counter() - rebuilding:.1f}s")
        bar.show("analyzing ...")
        # Fresh statistics, or the planner guesses from empty tables (and autovacuum may be off).
        await conn.execute(f"ANALYZE {', '.join(ALL_TABLES)}")
        bar.end()
    finally:
        await conn.close()
    return SeedReport(
        hospitals=len(plans),
        practitioners=counts["practitioner"],
        patients=counts["patient"],
        appointments=counts["appointment"],
        encounters=counts["encounter"],
        seconds=time.perf_counter() - started,
        hospital_slugs=tuple(plan.slug for plan in plans),
        hospital_ids=tuple(plan.id for plan in plans),
    )


async def _copy_all(
    conn: asyncpg.Connection,
    plans: Sequence[synthetic.HospitalPlan],
    now: dt.datetime,
    bar: _Progress,
) -> dict[str, int]:
    """COPY every plan's rows in foreign-key order; return rows copied per table."""
    counts = dict.fromkeys(ALL_TABLES, 0)
    counts["hospital"] = await _copy(conn, hospital, map(synthetic.hospital_row, plans), bar)
    for plan in plans:
        rows = synthetic.HospitalRows(plan, now)
        counts["practitioner"] += await _copy(conn, practitioner, rows.practitioners(), bar)
        counts["patient"] += await _copy(conn, patient, rows.patients(), bar)
        for days in rows.chunks(CHUNK_ROWS):
            # The appointments of a chunk stream into COPY while their encounters collect here:
            # encounters reference appointments, so they follow in a second COPY.
            encounters: list[synthetic.Row] = []
            counts["appointment"] += await _copy(
                conn, appointment, rows.visits(days, encounters), bar
            )
            counts["encounter"] += await _copy(conn, encounter, encounters, bar)
    return counts
