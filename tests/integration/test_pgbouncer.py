"""The app through a real PgBouncer in transaction mode, with ``HMS_DATABASE_POOLER=pgbouncer``.

PgBouncer lends a client a server connection for one transaction. Here it has three server
connections for the database, under a dozen or more client connections from the app's pools,
so one client's consecutive transactions land on different server connections and each server
connection serves both hospitals in turn. Anything the app left behind past a transaction (a
prepared statement, a session setting, a tenant) would show: as an error, as a wrong answer, as
another hospital's rows, or in the server connections' state, which the tests look at from
inside each of them. The configuration is deploy/k8s/base/pgbouncer.ini's, with addresses,
authentication and pool sizes made local.

The last test takes the setting away and shows the same load failing.
"""

from __future__ import annotations

import asyncio
import configparser
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool
from starlette.applications import Starlette

from hms.app import create_app
from hms.persistence import memberships
from hms.persistence.database import Database, StatementTimeout
from hms.persistence.urls import async_url, asyncpg_dsn
from hms.resolvers.relay import from_global_id
from hms.security.identity import Memberships
from hms.security.membership_events import MembershipListener
from hms.settings import Settings
from tests import fixtures
from tests.api.writes import CREATE_PATIENT, SCHEDULE, UPDATE_PATIENT, at, gid, make_hospital
from tests.api.writes import rows as owner_rows
from tests.conftest import GraphQL, graphql_over, token, without_cost
from tests.interop.servers import ROOT, free_port
from tests.statements import recorded

PGBOUNCER = Path(shutil.which("pgbouncer") or "/usr/sbin/pgbouncer")
pytestmark = pytest.mark.skipif(
    not PGBOUNCER.is_file(),
    reason="PgBouncer is not installed here (apt-get install pgbouncer; .ci/run installs it)",
)
#: Server connections PgBouncer may open to the test database.
SERVERS = 3
#: Client connections each app may open to PgBouncer: more than SERVERS.
POOL = {"db_pool_size": 6, "db_max_overflow": 6}
CONCURRENT = 40

NESTED = """query($n: Int!) { patients(first: $n) { edges { node { id mrn
  appointments(first: 3) { edges { node { id startAt patient { id }
    practitioner { id familyName } } } }
  encounters(first: 2) { edges { node { id class } } } } } } }"""
PATIENT = """query($id: ID!) { patient(id: $id) { id mrn givenName familyName version
  appointments(first: 2) { edges { cursor node { id status } } pageInfo { hasNextPage } } } }"""
PAGE = """query($after: String) { patients(first: 7, after: $after) {
  edges { cursor node { id mrn } } pageInfo { hasNextPage endCursor } } }"""


@dataclasses.dataclass(frozen=True)
class Bouncer:
    url: str  # the test database through PgBouncer
    log: Path

    def problems(self, since: int = 0) -> list[str]:
        """The lines PgBouncer logged as warnings or errors (after the first ``since`` bytes)."""
        return [
            line
            for line in self.log.read_bytes()[since:].decode().splitlines()
            if " WARNING " in line or " ERROR " in line or " FATAL " in line
        ]


@contextlib.contextmanager
def pgbouncer(database_url: str, **overrides: str) -> Iterator[Bouncer]:
    """A PgBouncer process in front of ``database_url``'s database, stopped afterwards."""
    target = make_url(database_url)
    assert target.database is not None
    assert target.username is not None
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(ROOT / "deploy" / "k8s" / "base" / "pgbouncer.ini")
    port = free_port()
    directory = Path(tempfile.mkdtemp(prefix="hms-pgbouncer-"))
    ini["databases"] = {
        target.database: f"host={target.host} port={target.port or 5432} dbname={target.database}"
    }
    ini["pgbouncer"].update(
        {
            "listen_addr": "127.0.0.1",
            "listen_port": str(port),
            "auth_type": "trust",
            "auth_file": str(directory / "userlist.txt"),
            "default_pool_size": str(SERVERS),
            "reserve_pool_size": "0",
            "server_tls_sslmode": "disable",
            **overrides,
        }
    )
    (directory / "userlist.txt").write_text(f'"{target.username}" ""\n')
    with (directory / "pgbouncer.ini").open("w") as config:
        ini.write(config)
    # PgBouncer refuses to run as root: it then switches to postgres, which must read these.
    directory.chmod(0o755)
    for path in directory.iterdir():
        path.chmod(0o644)
    command = [str(PGBOUNCER), *(["-u", "postgres"] if os.geteuid() == 0 else [])]
    log = directory / "pgbouncer.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, str(directory / "pgbouncer.ini")], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 10
        while True:
            if process.poll() is not None:
                pytest.fail(f"PgBouncer exited with {process.returncode}:\n{log.read_text()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"PgBouncer not listening after 10 s:\n{log.read_text()}")
            time.sleep(0.05)
        url = target.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
        yield Bouncer(url, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(directory, ignore_errors=True)


async def server_sessions(bouncer: Bouncer) -> list[dict[str, Any]]:
    """The state of every server connection PgBouncer holds, seen from inside each: one open
    transaction per server connection at once, so each lands on a different one."""
    conns = [
        await asyncpg.connect(asyncpg_dsn(bouncer.url), statement_cache_size=0)
        for _ in range(SERVERS)
    ]
    seen = []
    try:
        for conn in conns:
            await conn.execute("BEGIN")
            row = await conn.fetchrow(
                "SELECT pg_backend_pid() AS pid, current_setting('role') AS role,"
                " current_setting('app.hospital_id', true) AS tenant,"
                " current_setting('statement_timeout') AS statement_timeout,"
                " current_setting('jit') AS jit,"
                " array(SELECT name FROM pg_prepared_statements ORDER BY name) AS prepared"
            )
            seen.append(dict(row))
    finally:
        for conn in conns:
            with contextlib.suppress(Exception):
                await conn.execute("ROLLBACK")
            await conn.close()
    return seen


async def assert_clean(bouncer: Bouncer) -> None:
    """No server connection keeps a prepared statement, role, tenant or deadline from the
    transactions it served. (Not JIT: asyncpg's type introspection turns it off and back on
    session-wide around its own query, and through a pooler the two may reach different server
    connections; harmless, and the reason requests set it per transaction.)"""
    sessions = await server_sessions(bouncer)
    assert len({s["pid"] for s in sessions}) == SERVERS
    for session in sessions:
        assert session["prepared"] == [], session
        assert session["role"] == "none", session
        assert session["tenant"] in ("", None), session
        assert session["statement_timeout"] == "0", session


@contextlib.asynccontextmanager
async def running(
    settings: Settings, knows: tuple[fixtures.HospitalData, ...] = ()
) -> AsyncIterator[Starlette]:
    """The app, started; it already knows the hospitals ``knows`` (as tests/conftest.py's)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        for hospital in knows:
            assert await app.state.pipeline.authenticator.tenants.exists(hospital.id)
        yield app


def pooled(settings: Settings, bouncer: Bouncer, **changes: Any) -> Settings:
    return settings.with_(database_url=bouncer.url, database_pooler="pgbouncer", **POOL, **changes)


@contextlib.asynccontextmanager
async def client_of(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hms.test") as client:
        yield client


@pytest.fixture(scope="module")
def bouncer(database_url: str) -> Iterator[Bouncer]:
    with pgbouncer(database_url) as running_bouncer:
        yield running_bouncer


@pytest.fixture(scope="module")
async def pooled_app(
    settings: Settings, bouncer: Bouncer, dataset: fixtures.Dataset
) -> AsyncIterator[Starlette]:
    async with running(pooled(settings, bouncer), (dataset.alpha, dataset.beta)) as app:
        yield app


@pytest.fixture(scope="module")
async def pooled_interpreted_app(
    settings: Settings, bouncer: Bouncer, dataset: fixtures.Dataset
) -> AsyncIterator[Starlette]:
    interpreted = pooled(settings, bouncer, execution="interpreted")
    async with running(interpreted, (dataset.alpha, dataset.beta)) as app:
        yield app


@pytest.fixture(scope="module")
async def clients(
    pooled_app: Starlette, pooled_interpreted_app: Starlette
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Clients of the compiled and the interpreted app, both through PgBouncer."""
    async with client_of(pooled_app) as compiled, client_of(pooled_interpreted_app) as interpreted:
        yield compiled, interpreted


@pytest.fixture
def quiet(caplog: pytest.LogCaptureFixture, bouncer: Bouncer) -> Iterator[None]:
    """Nothing went wrong out of sight: no warning or error logged by the app or PgBouncer
    (an error a resolver met is masked in the answer but logged)."""
    caplog.set_level(logging.WARNING)
    logged = bouncer.log.stat().st_size
    yield
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert bouncer.problems(since=logged) == []


async def test_reads_answer_as_they_do_without_pgbouncer(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
    pooled_app: Starlette,
    bouncer: Bouncer,
    gql: GraphQL,
    database_url: str,
    dataset: fixtures.Dataset,
    quiet: None,
) -> None:
    """A nested query, ``patient(id)`` and a paged list with a cursor, on both paths."""
    compiled, interpreted = (graphql_over(client, dataset) for client in clients)
    patient = gid("Patient", dataset.alpha.patients[6])
    first = await gql(PAGE, {"after": None})
    cursor = first["data"]["patients"]["pageInfo"]["endCursor"]
    for query, variables in (
        (NESTED, {"n": 30}),
        (PATIENT, {"id": patient}),
        (PAGE, {"after": None}),
        (PAGE, {"after": cursor}),
    ):
        expected = await gql(query, variables)  # the same app, straight to PostgreSQL
        assert "errors" not in expected
        with recorded(pooled_app.state.database.primary) as statements:
            assert await compiled(query, variables) == expected, query
        assert len(statements) == 1, statements
        assert "::text AS data" in statements[0], "not compiled"
        assert await interpreted(query, variables) == expected, query
    second = await compiled(PAGE, {"after": cursor})
    pages = [
        edge["node"]["id"] for page in (first, second) for edge in page["data"]["patients"]["edges"]
    ]
    assert len(set(pages)) == 14
    assert {gid("Patient", p) for p in dataset.alpha.patients} >= set(pages)
    await assert_clean(bouncer)


async def test_writes_through_pgbouncer(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
    database_url: str,
    dataset: fixtures.Dataset,
    quiet: None,
) -> None:
    """createPatient, updatePatient (and its version conflict), scheduleAppointment."""
    ward = await make_hospital(database_url)
    gql = graphql_over(clients[0], dataset)

    async def run(query: str, input_: dict[str, Any]) -> dict[str, Any]:
        body = await gql(query, {"input": input_}, hospital=ward)
        assert "errors" not in body, body
        (payload,) = body["data"].values()
        result: dict[str, Any] = payload
        return result

    created = await run(CREATE_PATIENT, {"mrn": "PGB-1", "givenName": "Ada", "familyName": "L"})
    assert created["userErrors"] == []
    patient = created["patient"]
    assert patient["version"] == 1
    updated = await run(
        UPDATE_PATIENT, {"id": patient["id"], "expectedVersion": 1, "familyName": "Lovelace"}
    )
    assert updated["userErrors"] == []
    assert (updated["patient"]["familyName"], updated["patient"]["version"]) == ("Lovelace", 2)
    stale = await run(
        UPDATE_PATIENT, {"id": patient["id"], "expectedVersion": 1, "familyName": "Byron"}
    )
    assert stale["patient"] is None
    assert [(e["code"], e["currentVersion"]) for e in stale["userErrors"]] == [
        ("VERSION_CONFLICT", 2)
    ]
    booked = await run(
        SCHEDULE,
        {
            "patientId": patient["id"],
            "practitionerId": gid("Practitioner", ward.practitioners[0]),
            "startAt": at(40, 1),
            "endAt": at(40, 1, 30),
        },
    )
    assert booked["userErrors"] == []
    assert booked["appointment"]["status"] == "BOOKED"
    stored = await owner_rows(
        database_url,
        "SELECT p.family_name, p.version, count(a.id) AS booked FROM patient p"
        " LEFT JOIN appointment a ON (a.hospital_id, a.patient_id) = (p.hospital_id, p.id)"
        " WHERE p.hospital_id = $1 AND p.mrn = 'PGB-1' GROUP BY p.family_name, p.version",
        ward.id,
    )
    assert [tuple(r) for r in stored] == [("Lovelace", 2, 1)]


def _ids(body: dict[str, Any]) -> tuple[set[str], set[str], set[str]]:
    patients, appointments, practitioners = set(), set(), set()
    for edge in body["data"]["patients"]["edges"]:
        patients.add(edge["node"]["id"])
        for booking in edge["node"]["appointments"]["edges"]:
            appointments.add(booking["node"]["id"])
            assert booking["node"]["patient"]["id"] == edge["node"]["id"]
            practitioners.add(booking["node"]["practitioner"]["id"])
    return patients, appointments, practitioners


async def _load(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient], dataset: fixtures.Dataset
) -> list[tuple[fixtures.HospitalData, httpx.Response]]:
    """CONCURRENT requests at once, alternating hospitals and compiled/interpreted apps."""
    hospitals = [dataset.alpha, dataset.beta]
    plan = [(hospitals[i % 2], clients[i // 2 % 2]) for i in range(CONCURRENT)]
    responses = await asyncio.gather(
        *(
            client.post(
                "/graphql",
                json={"query": NESTED, "variables": {"n": 40}},
                headers={"Authorization": f"Bearer {token(hospital)}"},
            )
            for hospital, client in plan
        )
    )
    return [(hospital, response) for (hospital, _), response in zip(plan, responses, strict=True)]


async def test_concurrent_requests_of_two_hospitals_share_three_server_connections(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
    bouncer: Bouncer,
    gql: GraphQL,
    database_url: str,
    dataset: fixtures.Dataset,
    quiet: None,
) -> None:
    expected = {}
    for hospital in (dataset.alpha, dataset.beta):
        body = await gql(NESTED, {"n": 40}, hospital=hospital)
        patients, appointments, practitioners = _ids(body)
        # The answer is the hospital's own rows, and only those.
        assert patients <= {gid("Patient", p) for p in hospital.patients}
        assert len(patients) == min(40, len(hospital.patients))
        assert appointments <= {
            gid("Appointment", a) for ids in hospital.appointments.values() for a in ids
        }
        assert practitioners <= {gid("Practitioner", p) for p in hospital.practitioners}
        expected[hospital.id] = body
    for _ in range(3):
        for hospital, response in await _load(clients, dataset):
            assert response.status_code == 200, response.text
            assert without_cost(response.json()) == expected[hospital.id]
    await assert_clean(bouncer)


async def test_each_transaction_binds_its_own_tenant_on_a_shared_server_connection(
    settings: Settings, bouncer: Bouncer, database_url: str, dataset: fixtures.Dataset
) -> None:
    """Thirty transactions from up to twelve client connections run on three server
    connections, each with its own tenant, role and JIT setting, on both statement paths."""
    database = Database.from_settings(pooled(settings, bouncer))
    probe = text(
        "SELECT pg_backend_pid(), current_setting('app.hospital_id'), current_user,"
        " current_setting('jit') FROM pg_sleep(0.02)"
    )

    async def one(hospital: fixtures.HospitalData) -> tuple[Any, ...]:
        # One transaction after the other: a request never holds two server connections.
        db = database.request(hospital.id, readonly=True)
        try:
            row = await db.one_or_none(probe)
        finally:
            await db.close()
        db = database.request(hospital.id, readonly=True)
        try:
            data, ok = await db.fetch_json(
                "SELECT concat_ws(' ', pg_backend_pid(), current_setting('app.hospital_id'),"
                " current_user, current_setting('jit')), true",
                [],
            )
        finally:
            await db.close()
        assert row is not None
        assert ok
        return hospital.id, tuple(row), tuple(data.split(" "))

    try:
        seen = await asyncio.gather(*(one((dataset.alpha, dataset.beta)[i % 2]) for i in range(30)))
        pool = database.primary.pool
        assert isinstance(pool, AsyncAdaptedQueuePool)
        assert pool.checkedin() > SERVERS  # the client connections the pool opened and kept
    finally:
        await database.dispose()
    pids = set()
    for hospital_id, (pid, tenant, role, jit), compiled in seen:
        assert (tenant, role, jit) == (str(hospital_id), "hms_app", "off")
        assert compiled[1:] == (str(hospital_id), "hms_app", "off")
        pids |= {pid, int(compiled[0])}
    assert len(pids) <= SERVERS
    await assert_clean(bouncer)


async def test_statement_timeouts_still_apply(
    settings: Settings, bouncer: Bouncer, database_url: str, dataset: fixtures.Dataset
) -> None:
    """PostgreSQL cancels a statement at the request's deadline on both paths, and an API
    request stuck behind a lock ends with TIMEOUT; the deadline stays with its transaction."""
    database = Database.from_settings(pooled(settings, bouncer))
    try:
        db = database.request(dataset.alpha.id, readonly=True, timeout=0.5)
        with pytest.raises(StatementTimeout) as interpreted:
            await db.scalar(text("SELECT pg_sleep(5)"))
        await db.close()
        db = database.request(dataset.alpha.id, readonly=True, timeout=0.5)
        with pytest.raises(StatementTimeout) as compiled:
            await db.fetch_json("SELECT pg_sleep(5)::text, true", [])
        await db.close()
    finally:
        await database.dispose()
    assert interpreted.value.sqlstate == compiled.value.sqlstate == "57014"  # query_canceled

    lock = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        async with lock.transaction():
            await lock.execute("LOCK TABLE patient IN ACCESS EXCLUSIVE MODE")
            async with (
                running(pooled(settings, bouncer, read_timeout=1.0)) as app,
                client_of(app) as client,
            ):
                started = time.monotonic()
                response = await client.post(
                    "/graphql",
                    json={"query": "{ patientStats { total } }"},
                    headers={"Authorization": f"Bearer {token(dataset.alpha)}"},
                )
                elapsed = time.monotonic() - started
            waiting = await lock.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
    finally:
        await lock.close()
    assert response.status_code == 504, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "TIMEOUT"
    assert 0.9 < elapsed < 3
    assert waiting == 0  # PostgreSQL stopped the statement too
    await assert_clean(bouncer)


async def test_the_membership_listener_stays_up_through_pgbouncer(
    settings: Settings, bouncer: Bouncer, caplog: pytest.LogCaptureFixture
) -> None:
    """With OIDC each worker LISTENs for membership changes. Through a transaction pooler the
    LISTEN does not last (deploy/README.md, Limitations: changes then arrive by expiry), but
    the listener must not fail either: its pings, many of them here, land on any server
    connection, and it never reconnects."""
    database = Database.from_settings(pooled(settings, bouncer))
    listener = MembershipListener(Memberships(database), bouncer.url, ping_every=0.05, pooled=True)
    following = asyncio.create_task(listener.run())
    try:
        deadline = time.monotonic() + 5
        while not listener.listening:
            assert time.monotonic() < deadline, "the listener never listened"
            await asyncio.sleep(0.01)
        await asyncio.sleep(1.5)
        assert listener.listening
        assert listener.sessions == 1
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
        await database.dispose()
    assert "membership notifications interrupted" not in caplog.text


async def test_without_the_setting_pgbouncer_breaks_the_app(
    settings: Settings,
    database_url: str,
    dataset: fixtures.Dataset,
    gql: GraphQL,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The proof that the setting matters: the app as it was, through the same PgBouncer."""
    unaware = settings.with_(**POOL)  # HMS_DATABASE_POOLER=none
    query = {"query": "{ patientStats { total } }"}
    headers = {"Authorization": f"Bearer {token(dataset.alpha)}"}
    # Configured as in deploy/: PgBouncer refuses the app's startup parameter jit=off.
    with pgbouncer(database_url) as strict:
        async with (
            running(unaware.with_(database_url=strict.url)) as app,
            client_of(app) as client,
        ):
            refused = await client.post("/graphql", json=query, headers=headers)
        assert refused.status_code == 503, refused.text
        assert refused.json()["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
        assert any("unsupported startup parameter: jit" in line for line in strict.problems())

    # Told to drop it (as deploy/'s pgbouncer.ini used to be): prepared statements go astray,
    # on the first round of CONCURRENT requests in every run so far (about half of them fail).
    expected = {
        h.id: await gql(NESTED, {"n": 40}, hospital=h) for h in (dataset.alpha, dataset.beta)
    }
    with pgbouncer(
        database_url, ignore_startup_parameters="jit,client_connection_check_interval"
    ) as lenient:
        async with (
            running(unaware.with_(database_url=lenient.url)) as compiled_app,
            running(
                unaware.with_(database_url=lenient.url, execution="interpreted")
            ) as interpreted_app,
            client_of(compiled_app) as compiled,
            client_of(interpreted_app) as interpreted,
        ):
            wrong: list[tuple[int, str]] = []
            for _ in range(5):
                for hospital, response in await _load((compiled, interpreted), dataset):
                    body = without_cost(response.json())
                    if response.status_code != 200 or body != expected[hospital.id]:
                        codes = {e["extensions"]["code"] for e in body.get("errors", [])}
                        wrong.append((response.status_code, ",".join(sorted(codes))))
                if wrong:
                    break
            sessions = await server_sessions(lenient)
    assert wrong, "every request was answered right without the setting"
    # "prepared statement ... does not exist" (or "already exists"), masked in the answers
    assert "(SQLSTATE 26000)" in caplog.text or "(SQLSTATE 42P05)" in caplog.text
    # The cause: asyncpg's named statements stay on the server connections they were made on.
    assert any(name.startswith("__asyncpg_stmt_") for s in sessions for name in s["prepared"])


async def test_a_direct_listen_url_brings_membership_changes_back(
    settings: Settings, bouncer: Bouncer, database_url: str
) -> None:
    """Through the pooler a LISTEN hears nothing; with ``HMS_DATABASE_LISTEN_URL`` naming the
    database directly, a worker whose requests go through PgBouncer forgets a changed member
    at once again."""
    ward = await make_hospital(database_url, practitioners=1)
    subject = "listen-test"
    owner = create_async_engine(async_url(database_url))
    results = {}
    try:
        for name, listen_url in (("pooler", bouncer.url), ("direct", database_url)):
            database = Database.from_settings(pooled(settings, bouncer))
            members = Memberships(database, ttl=3600)
            listener = MembershipListener(members, listen_url, pooled=name == "pooler")
            following = asyncio.create_task(listener.run())
            try:
                deadline = time.monotonic() + 5
                while not listener.listening:
                    assert time.monotonic() < deadline, "the listener never listened"
                    await asyncio.sleep(0.01)
                await memberships.put_as_owner(owner, ward.id, subject, ["clinician"])
                assert await members.roles(ward.id, subject) == frozenset({"clinician"})
                await memberships.put_as_owner(owner, ward.id, subject, ["auditor"])
                deadline = time.monotonic() + 2
                while time.monotonic() < deadline:
                    if members._known.get((ward.id, subject)) == (False, None):
                        break
                    await asyncio.sleep(0.02)
                results[name] = await members.roles(ward.id, subject)
            finally:
                following.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await following
                await database.dispose()
    finally:
        await owner.dispose()
    assert results == {"pooler": frozenset({"clinician"}), "direct": frozenset({"auditor"})}


async def test_jobs_are_enqueued_cancelled_and_run_through_pgbouncer(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
    bouncer: Bouncer,
    database_url: str,
    dataset: fixtures.Dataset,
    tmp_path: Path,
    quiet: None,
) -> None:
    """The queue's statements (enqueue, cancel) run in the request's transaction through the
    pooler, and ``hms worker`` does its tenant work through it too, LISTENing on the direct URL
    (HMS_DATABASE_LISTEN_URL); no server connection keeps anything."""
    from hms.jobs import notify
    from hms.persistence import jobs
    from tests.jobs_support import Receiver, Worker, wait_until

    ward = await make_hospital(database_url)
    gql = graphql_over(clients[0], dataset)
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(hours=1)

    async def book(practitioner: int) -> dict[str, Any]:
        body = await gql(
            SCHEDULE,
            {
                "input": {
                    "patientId": gid("Patient", ward.patients[0]),
                    "practitionerId": gid("Practitioner", ward.practitioners[practitioner]),
                    "startAt": start.isoformat(),
                    "endAt": (start + dt.timedelta(minutes=30)).isoformat(),
                }
            },
            hospital=ward,
        )
        assert "errors" not in body, body
        appointment: dict[str, Any] = body["data"]["scheduleAppointment"]["appointment"]
        return appointment

    kept, dropped = await book(0), await book(1)
    cancelled = await gql(
        "mutation($input: CancelAppointmentInput!) { cancelAppointment(input: $input) {"
        " userErrors { code } } }",
        {"input": {"id": dropped["id"], "reason": "called"}},
        hospital=ward,
    )
    assert cancelled["data"]["cancelAppointment"]["userErrors"] == []
    live = await owner_rows(
        database_url,
        "SELECT dedupe_key FROM pgqueuer WHERE convert_from(payload, 'UTF8')::jsonb"
        " ->> 'hospital' = $1",
        str(ward.id),
    )
    kept_pk = from_global_id(kept["id"])[1]
    assert [r["dedupe_key"] for r in live] == [jobs.reminder_key(kept_pk)]
    await assert_clean(bouncer)

    receiver = Receiver(notify.new_secret())
    try:
        engine = create_async_engine(async_url(database_url))
        try:
            await jobs.set_webhook(engine, ward.id, receiver.url, receiver.secret)
        finally:
            await engine.dispose()
        worker = Worker(
            database_url,
            tmp_path,
            HMS_DATABASE_URL=bouncer.url,
            HMS_DATABASE_POOLER="pgbouncer",
            HMS_DATABASE_LISTEN_URL=database_url,
        )
        try:
            await asyncio.to_thread(wait_until, lambda: len(receiver.kept) == 1, 30, "delivery")
            assert worker.stop() == 0
        finally:
            if worker.process.poll() is None:
                worker.process.kill()
        assert receiver.refused == 0
        (message,) = receiver.kept.values()
        assert message.body["data"]["appointment"]["id"] == kept["id"]
    finally:
        receiver.close()
    await assert_clean(bouncer)
