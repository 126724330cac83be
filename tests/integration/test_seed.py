"""``hms seed``: synthetic data loads with COPY, is valid, reproducible and only ever adds.

Every test seeds throwaway ``hms_seed_test_*`` databases on this machine's PostgreSQL, migrated
with the real migrations, and checks the rows with SQL.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import pytest

from hms.persistence import migrate, seed, synthetic
from hms.persistence.urls import asyncpg_dsn

SERVER = os.environ.get("HMS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
#: Fixed, so two loads can be compared row for row (timestamps and ids derive from it).
NOW = dt.datetime(2026, 3, 4, 10, 30, tzinfo=dt.UTC)
HOSPITALS, PATIENTS = 2, 200

Database = Callable[[], Awaitable[str]]


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(f"{SERVER}/postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
async def database() -> AsyncIterator[Database]:
    """A factory of migrated, empty databases, all dropped when the module is done."""
    names: list[str] = []

    async def make() -> str:
        name = f"hms_seed_test_{uuid.uuid4().hex[:12]}"
        await _admin(f'CREATE DATABASE "{name}"')
        names.append(name)
        url = f"{SERVER}/{name}"
        await asyncio.to_thread(migrate.upgrade, url)
        return url

    yield make
    for name in names:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _load(
    url: str,
    *,
    rng_seed: int = 7,
    hospitals: int = HOSPITALS,
    patients: int = PATIENTS,
    progress: bool = False,
    rebuild_threshold: int = seed.REBUILD_THRESHOLD,
) -> seed.SeedReport:
    return await seed.load(
        url,
        hospitals=hospitals,
        patients_per_hospital=patients,
        rng_seed=rng_seed,
        progress=progress,
        now=NOW,
        rebuild_threshold=rebuild_threshold,
    )


@pytest.fixture(scope="module")
async def seeded(database: Database) -> tuple[str, seed.SeedReport]:
    url = await database()
    return url, await _load(url)


async def _fetchval(url: str, sql: str) -> Any:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


OVERLAPS = """
    SELECT count(*) FROM appointment a JOIN appointment b
      ON a.hospital_id = b.hospital_id AND a.practitioner_id = b.practitioner_id AND a.id < b.id
     AND tstzrange(a.start_at, a.end_at, '[)') && tstzrange(b.start_at, b.end_at, '[)')
    WHERE a.status IN ('pending', 'booked', 'arrived', 'checked-in', 'fulfilled')
      AND b.status IN ('pending', 'booked', 'arrived', 'checked-in', 'fulfilled')
"""

SCHEMA = """
    SELECT string_agg(definition, E'\\n' ORDER BY definition) FROM (
        SELECT indexdef AS definition FROM pg_indexes
         WHERE schemaname = 'public' AND tablename IN ('patient', 'appointment', 'encounter')
        UNION ALL
        SELECT conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
               || ' valid=' || convalidated
          FROM pg_constraint WHERE connamespace = 'public'::regnamespace
    ) AS everything
"""

#: A fingerprint of every generated column that does not depend on the database.
FINGERPRINT = """
    SELECT md5(string_agg(row, ',' ORDER BY row)) FROM (
        SELECT concat_ws('|', h.slug, p.id, mrn, given_name, family_name, birth_date, gender,
                         phone, email, active, deceased_at, national_id_last4, created_at) AS row
          FROM patient p JOIN hospital h ON h.id = p.hospital_id
        UNION ALL
        SELECT concat_ws('|', id, patient_id, practitioner_id, status, start_at, end_at, reason,
                         cancellation_reason, created_at) FROM appointment
        UNION ALL
        SELECT concat_ws('|', id, patient_id, practitioner_id, appointment_id, status, class,
                         period_start, period_end, reason) FROM encounter
    ) AS everything
"""


async def test_counts_match_the_report(seeded: tuple[str, seed.SeedReport]) -> None:
    url, report = seeded
    assert report.hospitals == HOSPITALS == len(report.hospital_slugs) == len(report.hospital_ids)
    assert report.patients == HOSPITALS * PATIENTS
    assert report.practitioners == HOSPITALS * 5  # at least 5, else one per 50 patients
    assert report.appointments == 5 * report.patients
    assert 2.7 * report.patients <= report.encounters <= 3.3 * report.patients
    for table, expected in [
        ("hospital", report.hospitals),
        ("practitioner", report.practitioners),
        ("patient", report.patients),
        ("appointment", report.appointments),
        ("encounter", report.encounters),
    ]:
        assert await _fetchval(url, f"SELECT count(*) FROM {table}") == expected, table
    slugs = await _fetchval(url, "SELECT array_agg(slug ORDER BY slug) FROM hospital")
    assert slugs == sorted(report.hospital_slugs)


async def test_mrns_are_unique_and_sequential_per_hospital(
    seeded: tuple[str, seed.SeedReport],
) -> None:
    url, _ = seeded
    row = await _fetchval(
        url,
        "SELECT array[count(*), count(DISTINCT (hospital_id, mrn)),"
        " count(*) FILTER (WHERE mrn ~ '^MRN[0-9]{8}$')] FROM patient",
    )
    assert row == [HOSPITALS * PATIENTS] * 3
    # MRNs follow registration order, as a hospital's registry hands them out.
    out_of_order = await _fetchval(
        url,
        "SELECT count(*) FROM (SELECT mrn, lag(created_at) OVER w > created_at AS back"
        " FROM patient WINDOW w AS (PARTITION BY hospital_id ORDER BY mrn)) t WHERE back",
    )
    assert out_of_order == 0


async def test_no_practitioner_is_double_booked(seeded: tuple[str, seed.SeedReport]) -> None:
    url, _ = seeded
    assert await _fetchval(url, OVERLAPS) == 0
    # Not vacuous: practitioners are busy in the past and booked in the future.
    active = await _fetchval(
        url,
        "SELECT array[count(*) FILTER (WHERE start_at < '2026-03-04'),"
        " count(*) FILTER (WHERE start_at > '2026-03-05')] FROM appointment"
        " WHERE status IN ('pending', 'booked', 'arrived', 'checked-in', 'fulfilled')",
    )
    assert min(active) > 100


async def test_encounters_follow_their_appointments(seeded: tuple[str, seed.SeedReport]) -> None:
    url, report = seeded
    linked = await _fetchval(url, "SELECT count(*) FROM encounter WHERE appointment_id IS NOT NULL")
    assert linked > report.encounters // 2
    mismatched = await _fetchval(
        url,
        "SELECT count(*) FROM encounter e JOIN appointment a"
        " ON a.hospital_id = e.hospital_id AND a.id = e.appointment_id"
        " WHERE a.patient_id <> e.patient_id OR a.practitioner_id <> e.practitioner_id"
        " OR a.start_at <> e.period_start OR a.status NOT IN ('fulfilled', 'checked-in')",
    )
    assert mismatched == 0
    walk_ins = await _fetchval(
        url,
        "SELECT count(DISTINCT class) FROM encounter WHERE appointment_id IS NULL"
        " AND class IN ('EMER', 'IMP', 'OBSENC', 'HH', 'VR')",
    )
    assert walk_ins == 5


async def test_timelines_are_consistent(seeded: tuple[str, seed.SeedReport]) -> None:
    """Nobody is seen before registering; bookings precede visits; the future is not done."""
    url, _ = seeded
    problems = {
        "appointment booked after start or now": "SELECT count(*) FROM appointment"
        " WHERE created_at > start_at OR created_at > '2026-03-04T10:30Z'",
        "appointment before registration": "SELECT count(*) FROM appointment a JOIN patient p"
        " ON p.hospital_id = a.hospital_id AND p.id = a.patient_id"
        " WHERE a.created_at < p.created_at",
        "encounter before registration": "SELECT count(*) FROM encounter e JOIN patient p"
        " ON p.hospital_id = e.hospital_id AND p.id = e.patient_id"
        " WHERE e.period_start < p.created_at",
        "future appointment already done": "SELECT count(*) FROM appointment"
        " WHERE start_at > '2026-03-04T10:30Z' AND status IN ('fulfilled', 'noshow', 'arrived')",
        "cancelled without reason": "SELECT count(*) FROM appointment"
        " WHERE (status = 'cancelled') <> (cancellation_reason IS NOT NULL)",
        "unfinished encounter with an end": "SELECT count(*) FROM encounter"
        " WHERE (status = 'in-progress') <> (period_end IS NULL)",
        "appointment after death": "SELECT count(*) FROM appointment a JOIN patient p"
        " ON p.hospital_id = a.hospital_id AND p.id = a.patient_id"
        " WHERE a.start_at > p.deceased_at",
        "encounter after death": "SELECT count(*) FROM encounter e JOIN patient p"
        " ON p.hospital_id = e.hospital_id AND p.id = e.patient_id"
        " WHERE e.period_start > p.deceased_at",
        "deceased but active": "SELECT count(*) FROM patient"
        " WHERE deceased_at IS NOT NULL AND active",
    }
    found = {name: await _fetchval(url, sql) for name, sql in problems.items()}
    assert found == dict.fromkeys(problems, 0)
    fulfilled = await _fetchval(
        url,
        "SELECT avg((status = 'fulfilled')::int) FROM appointment"
        " WHERE end_at < '2026-03-04T10:30Z'",
    )
    assert 0.75 < float(fulfilled) < 0.87


async def test_same_seed_gives_the_same_rows(
    database: Database, seeded: tuple[str, seed.SeedReport]
) -> None:
    first_url, first = seeded
    again_url, other_url = await database(), await database()
    again = await _load(again_url)
    await _load(other_url, rng_seed=8)
    assert again.hospital_ids == first.hospital_ids
    assert again.hospital_slugs == first.hospital_slugs
    fingerprint = await _fetchval(first_url, FINGERPRINT)
    assert await _fetchval(again_url, FINGERPRINT) == fingerprint
    assert await _fetchval(other_url, FINGERPRINT) != fingerprint


async def test_seeding_again_adds_hospitals_with_new_slugs(database: Database) -> None:
    url = await database()
    first = await _load(url, hospitals=1, patients=30)
    # The same seed again: a fresh slug, so fresh ids, instead of colliding with the first run.
    second = await _load(url, hospitals=len(synthetic.HOSPITALS), patients=5)
    assert first.hospital_slugs[0] not in second.hospital_slugs
    assert len(set(second.hospital_slugs)) == len(synthetic.HOSPITALS)
    assert any(slug.endswith("-2") for slug in second.hospital_slugs)  # the catalogue ran out
    assert await _fetchval(url, "SELECT count(*) FROM hospital") == 1 + len(synthetic.HOSPITALS)
    assert await _fetchval(url, "SELECT count(*) FROM patient") == 30 + 5 * second.hospitals


async def test_a_big_load_rebuilds_the_migrated_schema_exactly(database: Database) -> None:
    """Forcing the drop-and-rebuild path must leave the same indexes and constraints behind."""
    url = await database()
    await _load(url, hospitals=1, patients=20)  # the small path first: rows to re-validate
    before = await _fetchval(url, SCHEMA)
    assert "ex_appointment_no_double_booking" in before
    report = await _load(url, hospitals=1, patients=100, rebuild_threshold=1)
    assert await _fetchval(url, SCHEMA) == before
    assert report.appointments == 500
    assert await _fetchval(url, OVERLAPS) == 0
    with pytest.raises(asyncpg.ExclusionViolationError):  # and it is enforced again
        await _fetchval(
            url,
            "INSERT INTO appointment (hospital_id, id, patient_id, practitioner_id, status,"
            " start_at, end_at) SELECT hospital_id, gen_random_uuid(), patient_id,"
            " practitioner_id, 'booked', start_at, end_at FROM appointment"
            " WHERE status = 'booked' LIMIT 1 RETURNING id",
        )


async def test_a_failed_load_leaves_the_database_as_it_was(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = await database()
    await _load(url, hospitals=1, patients=10)
    before = [await _fetchval(url, SCHEMA), await _fetchval(url, FINGERPRINT)]
    visits = synthetic.HospitalRows.visits

    def broken(
        self: synthetic.HospitalRows, days: range, encounters: list[synthetic.Row]
    ) -> Iterator[synthetic.Row]:
        rows = visits(self, days, encounters)
        yield next(rows)
        raise RuntimeError("generator broke mid-COPY")

    monkeypatch.setattr(synthetic.HospitalRows, "visits", broken)
    with pytest.raises(RuntimeError, match="mid-COPY"):
        await _load(url, hospitals=2, patients=50, rebuild_threshold=1)
    assert [await _fetchval(url, SCHEMA), await _fetchval(url, FINGERPRINT)] == before
    assert await _fetchval(url, "SELECT count(*) FROM hospital") == 1


async def test_a_role_subject_to_rls_is_refused_up_front(database: Database) -> None:
    url = await database()
    role = f"hms_seed_test_{uuid.uuid4().hex[:8]}"
    await _admin(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS")
    try:
        with pytest.raises(seed.SeedError, match="row-level security"):
            await seed.load(
                url.replace("postgres@", f"{role}@", 1),
                hospitals=1,
                patients_per_hospital=1,
            )
    finally:
        await _admin(f"DROP ROLE {role}")


async def test_progress_goes_to_stderr_only_when_asked(
    database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    url = await database()
    await _load(url, hospitals=1, patients=20, progress=False)
    assert capsys.readouterr() == ("", "")
    await _load(url, hospitals=1, patients=20, progress=True)
    out, err = capsys.readouterr()
    assert out == ""
    assert "\r" in err
    for table in ("patients", "appointments", "encounters"):
        assert table in err


def test_the_report_reads_as_one_line() -> None:
    report = seed.SeedReport(
        hospitals=2,
        practitioners=12,
        patients=600,
        appointments=3012,
        encounters=1790,
        seconds=1.23,
    )
    assert str(report) == (
        "seeded 2 hospitals: 600 patients, 12 practitioners, 3,012 appointments,"
        " 1,790 encounters in 1.2s"
    )


def test_ids_are_time_ordered_uuid7() -> None:
    ms = 1_772_620_200_000
    ids = [uuid.UUID(synthetic.uuid7_hex(ms + i, (1 << 74) - 1 - i)) for i in range(3)]
    assert all(value.version == 7 and value.variant == uuid.RFC_4122 for value in ids)
    assert [value.int >> 80 for value in ids] == [ms, ms + 1, ms + 2]
    assert ids == sorted(ids)


def test_socket_urls_become_asyncpg_dsns() -> None:
    dsn = urllib.parse.urlsplit(asyncpg_dsn("postgresql://postgres:@/hms?host=/run/hms"))
    assert (dsn.scheme, dsn.username, dsn.hostname, dsn.path) == (
        "postgresql",
        "postgres",
        None,
        "/hms",
    )
    assert urllib.parse.parse_qs(dsn.query) == {"host": ["/run/hms"]}
    assert asyncpg_dsn("postgres://u:p@db:5432/x") == "postgresql://u:p@db:5432/x"
