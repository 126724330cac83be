"""Background jobs on the PostgreSQL queue (issue 13): enqueued in the write's own transaction,
run by real ``hms worker`` processes, delivered as signed webhooks to a real receiver.

The module has a database of its own, so the queue holds only what these tests put in it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.applications import Starlette

from hms.app import create_app
from hms.jobs import notify, reminders
from hms.jobs.base import JobInput, Services
from hms.persistence import jobs, migrate
from hms.persistence.database import Database
from hms.persistence.urls import async_url
from hms.settings import Settings
from tests import fixtures, jobs_support
from tests.api.writes import (
    CANCEL,
    RECORD_ENCOUNTER,
    RESCHEDULE,
    SCHEDULE,
    SET_STATUS,
    gid,
    make_hospital,
)
from tests.conftest import PHI_KEY, SECRET, token
from tests.integration.test_hospitals_cli import hms
from tests.jobs_support import Receiver, Worker

Hospital = fixtures.HospitalData
LEAD = dt.timedelta(hours=24)
#: Contact data of the test patient: it must reach the receiver, and no log line.
PHONE, EMAIL, GIVEN = "+15550001234", "quill.example@example.org", "Quillon"


@pytest.fixture(scope="module")
async def jobs_url(empty_database: Callable[[], Awaitable[str]]) -> str:
    url = await empty_database()
    await asyncio.to_thread(migrate.upgrade, url)
    return url


@pytest.fixture(scope="module")
async def api(jobs_url: str) -> AsyncIterator[httpx.AsyncClient]:
    unlimited = (1e12, 1e12)
    settings = Settings(
        database_url=jobs_url,
        jwt_secret=SECRET,
        phi_keys=(PHI_KEY,),
        db_pool_size=10,
        max_cost=100_000,
        cost_budgets={"default": unlimited},
        hospital_cost_budget=unlimited,
    )
    application: Starlette = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://hms.test") as client:
            yield client


@pytest.fixture(scope="module")
async def ward(jobs_url: str) -> Hospital:
    hospital = await make_hospital(jobs_url, practitioners=40)
    conn = await asyncpg.connect(jobs_url)
    try:
        patient_id = uuid.uuid4()
        await conn.execute(
            "INSERT INTO patient (hospital_id, id, mrn, given_name, family_name, phone, email)"
            " VALUES ($1, $2, 'QX-1', $3, 'Feathers', $4, $5)",
            hospital.id,
            patient_id,
            GIVEN,
            PHONE,
            EMAIL,
        )
        hospital.patients.insert(0, patient_id)
    finally:
        await conn.close()
    return hospital


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(notify.new_secret())
    yield server
    server.close()


@pytest.fixture
async def hooked(jobs_url: str, ward: Hospital, receiver: Receiver) -> Receiver:
    """``ward``'s reminders go to ``receiver``."""
    engine = create_async_engine(async_url(jobs_url))
    try:
        await jobs.set_webhook(engine, ward.id, receiver.url, receiver.secret)
    finally:
        await engine.dispose()
    return receiver


@pytest.fixture(autouse=True)
async def empty_queue(jobs_url: str) -> None:
    """Each test starts with an empty queue (a test's leftovers would run in the next one's
    workers)."""
    await _sql(jobs_url, "DELETE FROM pgqueuer")


async def _sql(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        found: list[asyncpg.Record] = await conn.fetch(sql, *args)
        return found
    finally:
        await conn.close()


async def gql(
    api: httpx.AsyncClient, hospital: Hospital, query: str, input_: dict[str, Any]
) -> dict[str, Any]:
    response = await api.post(
        "/graphql",
        json={"query": query, "variables": {"input": input_}},
        headers={"Authorization": f"Bearer {token(hospital)}"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    (payload,) = body["data"].values()
    return dict(payload)


def _iso(at: dt.datetime) -> str:
    return at.isoformat()


_slot = iter(range(1_000_000))


def slot_start(hours_ahead: float = 1.0) -> dt.datetime:
    """A start time no other booking of this module uses (30-minute slots, one practitioner
    each: see :func:`book`)."""
    base = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(hours=hours_ahead)
    return base + dt.timedelta(minutes=30 * next(_slot))


async def book(
    api: httpx.AsyncClient,
    ward: Hospital,
    start: dt.datetime,
    *,
    practitioner: int = 0,
    status: str | None = None,
) -> dict[str, Any]:
    input_ = {
        "patientId": gid("Patient", ward.patients[0]),
        "practitionerId": gid("Practitioner", ward.practitioners[practitioner]),
        "startAt": _iso(start),
        "endAt": _iso(start + dt.timedelta(minutes=30)),
    }
    if status is not None:
        input_["status"] = status
    payload = await gql(api, ward, SCHEDULE, input_)
    assert payload["userErrors"] == [], payload
    appointment: dict[str, Any] = payload["appointment"]
    return appointment


async def finish_encounter(
    api: httpx.AsyncClient, ward: Hospital, patient: int, start: dt.datetime, minutes: int
) -> dict[str, Any]:
    """Record a FINISHED encounter of ``ward``'s patient number ``patient`` (queues clinical
    work)."""
    payload = await gql(
        api,
        ward,
        RECORD_ENCOUNTER,
        {
            "patientId": gid("Patient", ward.patients[patient]),
            "class": "AMB",
            "status": "FINISHED",
            "periodStart": _iso(start),
            "periodEnd": _iso(start + dt.timedelta(minutes=minutes)),
        },
    )
    assert payload["userErrors"] == [], payload
    return payload


def pk(global_id: str) -> uuid.UUID:
    from hms.resolvers.relay import from_global_id

    return from_global_id(global_id)[1]


async def live_reminders(url: str, appointment: dict[str, Any]) -> list[asyncpg.Record]:
    return await _sql(
        url,
        "SELECT id, priority, status::text AS status, execute_after, payload, dedupe_key"
        " FROM pgqueuer WHERE entrypoint = 'reminders' AND dedupe_key = $1",
        jobs.reminder_key(pk(appointment["id"])),
    )


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], seconds: float, what: str
) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``seconds``."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        outcome = check()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def finished(url: str, appointment: dict[str, Any]) -> bool:
    return await live_reminders(url, appointment) == []


async def drained(url: str, *queues: str) -> bool:
    return all([await queued(url, queue) == 0 for queue in queues])


async def queued(url: str, queue: str) -> int:
    found = await _sql(url, "SELECT count(*) AS n FROM pgqueuer WHERE entrypoint = $1", queue)
    return int(found[0]["n"])


# --- enqueued with the write ---------------------------------------------------------------


async def test_a_booking_enqueues_its_reminder_in_the_same_transaction(
    api: httpx.AsyncClient, ward: Hospital, jobs_url: str
) -> None:
    start = slot_start(72)
    appointment = await book(api, ward, start)
    (job,) = await live_reminders(jobs_url, appointment)
    assert job["priority"] == jobs.REMINDERS.priority == 30
    assert job["status"] == "queued"
    assert abs(job["execute_after"] - (start - LEAD)) < dt.timedelta(seconds=5)
    # Ids only: the job reads names and contact data when it runs, under its tenant.
    assert orjson.loads(job["payload"]) == {
        "hospital": str(ward.id),
        "appointment": str(pk(appointment["id"])),
        "startAt": _iso(start),
    }

    # A booking refused by the exclusion constraint enqueues nothing.
    before = await queued(jobs_url, "reminders")
    taken = await gql(
        api,
        ward,
        SCHEDULE,
        {
            "patientId": gid("Patient", ward.patients[1]),
            "practitionerId": gid("Practitioner", ward.practitioners[0]),
            "startAt": _iso(start),
            "endAt": _iso(start + dt.timedelta(minutes=15)),
        },
    )
    assert [e["code"] for e in taken["userErrors"]] == ["SLOT_TAKEN"]
    assert await queued(jobs_url, "reminders") == before

    # A booking whose response fails is rolled back, job and all.
    rolled_back = SCHEDULE.replace(
        "patient { id }", "patient { id appointments(first: 500) { totalCount } }"
    )
    response = await api.post(
        "/graphql",
        json={
            "query": rolled_back,
            "variables": {
                "input": {
                    "patientId": gid("Patient", ward.patients[0]),
                    "practitionerId": gid("Practitioner", ward.practitioners[1]),
                    "startAt": _iso(slot_start(72)),
                    "endAt": _iso(slot_start(72)),
                }
            },
        },
        headers={"Authorization": f"Bearer {token(ward)}"},
    )
    assert response.json()["extensions"]["rolledBack"] is True
    assert await queued(jobs_url, "reminders") == before


async def test_later_writes_move_or_cancel_the_reminder_in_their_transaction(
    api: httpx.AsyncClient, ward: Hospital, jobs_url: str
) -> None:
    start = slot_start(72)
    appointment = await book(api, ward, start, practitioner=1)
    (first,) = await live_reminders(jobs_url, appointment)

    moved_to = slot_start(96)
    moved = await gql(
        api,
        ward,
        RESCHEDULE,
        {
            "id": appointment["id"],
            "expectedVersion": 1,
            "startAt": _iso(moved_to),
            "endAt": _iso(moved_to + dt.timedelta(minutes=30)),
        },
    )
    assert moved["userErrors"] == []
    (second,) = await live_reminders(jobs_url, appointment)
    assert second["id"] != first["id"]
    assert abs(second["execute_after"] - (moved_to - LEAD)) < dt.timedelta(seconds=5)
    logged = await _sql(
        jobs_url, "SELECT status::text AS s FROM pgqueuer_log WHERE job_id = $1", first["id"]
    )
    assert {r["s"] for r in logged} == {"queued", "canceled"}

    cancelled = await gql(api, ward, CANCEL, {"id": appointment["id"], "reason": "called"})
    assert cancelled["userErrors"] == []
    assert await live_reminders(jobs_url, appointment) == []

    no_show = await book(api, ward, slot_start(72), practitioner=1)
    marked = await gql(
        api, ward, SET_STATUS, {"id": no_show["id"], "status": "NOSHOW", "expectedVersion": 1}
    )
    assert marked["userErrors"] == []
    assert await live_reminders(jobs_url, no_show) == []

    # Only booked appointments are reminded of: a waitlisted one gets its reminder when booked.
    waiting = await book(api, ward, slot_start(72), practitioner=1, status="WAITLIST")
    assert await live_reminders(jobs_url, waiting) == []
    booked = await gql(
        api, ward, SET_STATUS, {"id": waiting["id"], "status": "BOOKED", "expectedVersion": 1}
    )
    assert booked["userErrors"] == []
    assert len(await live_reminders(jobs_url, waiting)) == 1

    # Inside the lead time the reminder is due at once.
    soon = await book(api, ward, slot_start(2), practitioner=1)
    (due,) = await live_reminders(jobs_url, soon)
    assert due["execute_after"] <= dt.datetime.now(dt.UTC)


async def test_a_finished_encounter_queues_clinical_work(
    api: httpx.AsyncClient, ward: Hospital, jobs_url: str
) -> None:
    base = {
        "patientId": gid("Patient", ward.patients[0]),
        "class": "AMB",
        "periodStart": _iso(dt.datetime(2026, 11, 2, 9, tzinfo=dt.UTC)),
    }
    ongoing = await gql(api, ward, RECORD_ENCOUNTER, {**base, "status": "IN_PROGRESS"})
    assert ongoing["userErrors"] == []
    assert await queued(jobs_url, "clinical") == 0
    done = await gql(
        api,
        ward,
        RECORD_ENCOUNTER,
        {
            **base,
            "status": "FINISHED",
            "periodEnd": _iso(dt.datetime(2026, 11, 2, 9, 45, tzinfo=dt.UTC)),
        },
    )
    assert done["userErrors"] == []
    (job,) = await _sql(
        jobs_url, "SELECT priority, payload FROM pgqueuer WHERE entrypoint = 'clinical'"
    )
    assert job["priority"] == jobs.CLINICAL.priority == 20
    assert orjson.loads(job["payload"]) == {
        "hospital": str(ward.id),
        "patient": str(ward.patients[0]),
        "encounter": str(pk(done["encounter"]["id"])),
    }


async def scrape(worker: Worker) -> str:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"http://127.0.0.1:{worker.metrics_port}/metrics")).text


# --- run by workers -------------------------------------------------------------------------


@pytest.fixture
def workers(jobs_url: str, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def start(**env: str) -> Worker:
        worker = Worker(jobs_url, tmp_path, **env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait(10)
    for worker in started:
        log = worker.output()
        for phi in (PHONE, EMAIL, GIVEN):
            assert phi not in log, f"the worker logged contact data: {phi}"


async def test_the_worker_delivers_each_reminder_once_signed_and_sums_up_visits(
    api: httpx.AsyncClient,
    ward: Hospital,
    jobs_url: str,
    hooked: Receiver,
    workers: Callable[..., Worker],
) -> None:
    due = [await book(api, ward, slot_start(2), practitioner=2) for _ in range(3)]
    dropped = await book(api, ward, slot_start(2), practitioner=2)
    await gql(api, ward, CANCEL, {"id": dropped["id"], "reason": "no longer needed"})
    later = await book(api, ward, slot_start(72), practitioner=2)
    await finish_encounter(api, ward, 1, dt.datetime(2026, 11, 3, 10, tzinfo=dt.UTC), 50)

    worker = workers()
    ids = {reminders.message_id(pk(a["id"]), dt.datetime.fromisoformat(a["startAt"])) for a in due}
    await eventually(lambda: set(hooked.kept_for("reminder_")) >= ids, 30, "three deliveries")
    await eventually(lambda: drained(jobs_url, "clinical"), 30, "clinical job")
    assert hooked.refused == 0  # every signature verified by the reference implementation
    assert set(hooked.kept_for("reminder_")) == ids  # nothing for the cancelled one
    assert all(hooked.tries_of(i) == 1 for i in ids)
    message = jobs_support.body_of(hooked.kept[next(iter(ids))])
    assert message["type"] == "appointment.reminder"
    assert message["data"]["patient"] == {
        "id": gid("Patient", ward.patients[0]),
        "givenName": GIVEN,
        "phone": PHONE,
        "email": EMAIL,
    }
    # The reminder of the appointment three days ahead waits for its time.
    (waiting,) = await live_reminders(jobs_url, later)
    assert waiting["status"] == "queued"

    (summary,) = await _sql(
        jobs_url,
        "SELECT finished_encounters, total_minutes, last_visit_at FROM patient_visit_summary"
        " WHERE hospital_id = $1 AND patient_id = $2",
        ward.id,
        ward.patients[1],
    )
    assert (summary["finished_encounters"], summary["total_minutes"]) == (1, 50)

    metrics = await scrape(worker)
    assert 'hms_jobs_finished_total{outcome="succeeded",queue="reminders"} 3.0' in metrics
    assert 'hms_jobs_finished_total{outcome="succeeded",queue="clinical"} 1.0' in metrics
    assert worker.stop() == 0
    assert "worker stopped" in worker.output()


async def test_a_failing_receiver_gets_retries_then_a_dead_letter_to_retry_by_hand(
    api: httpx.AsyncClient,
    ward: Hospital,
    jobs_url: str,
    hooked: Receiver,
    workers: Callable[..., Worker],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hooked.answer = lambda delivery: 500
    appointment = await book(api, ward, slot_start(2), practitioner=3)
    (job,) = await live_reminders(jobs_url, appointment)
    message = reminders.message_id(
        pk(appointment["id"]), dt.datetime.fromisoformat(appointment["startAt"])
    )
    worker = workers(HMS_JOB_MAX_ATTEMPTS="3")

    async def dead() -> bool:
        found = await live_reminders(jobs_url, appointment)
        return bool(found) and found[0]["status"] == "failed"

    await eventually(dead, 30, "the job to become a dead letter")
    assert hooked.tries_of(message) == 3  # every try carried the same webhook-id
    await asyncio.sleep(0.5)
    assert hooked.tries_of(message) == 3  # and no more after the last

    monkeypatch.setenv("HMS_DATABASE_URL", jobs_url)
    monkeypatch.setenv("HMS_JWT_SECRET", SECRET)
    code, out, said = await asyncio.to_thread(hms, "jobs", "list", "--status", "failed")
    assert code == 0, said
    (line,) = [row for row in out.splitlines() if row.startswith(f"{job['id']}\t")]
    assert "reminders\tfailed\t30\t" in line
    assert line.endswith("\tDeliveryFailed: HTTP 500")
    code, out, said = await asyncio.to_thread(hms, "jobs", "stats", "--json")
    stats = {entry["queue"]: entry for entry in orjson.loads(out)}
    assert stats["reminders"]["dead"] == 1
    metrics = await scrape(worker)
    assert 'hms_jobs_finished_total{outcome="retried",queue="reminders"} 2.0' in metrics
    assert 'hms_jobs_finished_total{outcome="dead",queue="reminders"} 1.0' in metrics

    hooked.answer = lambda delivery: 204
    code, out, said = await asyncio.to_thread(hms, "jobs", "retry", str(job["id"]))
    assert (code, out.strip()) == (0, f"job {job['id']} queued again")
    await eventually(lambda: message in hooked.kept, 30, "the retried delivery")
    await eventually(
        lambda: finished(jobs_url, appointment),
        30,
        "the job to finish",
    )
    code, _out, said = await asyncio.to_thread(hms, "jobs", "retry", str(job["id"]))
    assert code == 1
    assert "not a dead letter" in said


async def test_a_worker_killed_mid_delivery_leaves_the_job_to_another(
    api: httpx.AsyncClient,
    ward: Hospital,
    jobs_url: str,
    hooked: Receiver,
    workers: Callable[..., Worker],
) -> None:
    import threading

    hooked.hold = threading.Event()  # the first delivery hangs: the worker is mid-job
    appointment = await book(api, ward, slot_start(2), practitioner=4)
    message = reminders.message_id(
        pk(appointment["id"]), dt.datetime.fromisoformat(appointment["startAt"])
    )
    first = workers()
    await asyncio.to_thread(hooked.arrived.wait, 30)
    first.kill()
    (job,) = await live_reminders(jobs_url, appointment)
    assert job["status"] == "picked"  # the dead worker's, until its heartbeat is stale

    workers()
    await eventually(lambda: message in hooked.kept, 30, "redelivery")
    await eventually(
        lambda: finished(jobs_url, appointment),
        30,
        "the job to finish",
    )
    # At least once on the wire, once for the receiver: the retry carried the same id.
    assert hooked.tries_of(message) == 2
    assert list(hooked.kept_for("reminder_")) == [message]


async def test_sigterm_releases_a_job_that_does_not_finish_in_time(
    api: httpx.AsyncClient,
    ward: Hospital,
    jobs_url: str,
    hooked: Receiver,
    workers: Callable[..., Worker],
) -> None:
    import threading
    import time

    hooked.hold = threading.Event()
    appointment = await book(api, ward, slot_start(2), practitioner=5)
    worker = workers(HMS_SHUTDOWN_TIMEOUT="1")
    await asyncio.to_thread(hooked.arrived.wait, 30)
    began = time.monotonic()
    assert await asyncio.to_thread(worker.stop) == 0
    assert time.monotonic() - began < 10
    assert "released at shutdown" in worker.output()
    (job,) = await live_reminders(jobs_url, appointment)
    assert job["status"] == "queued"  # back in the queue at once, no heartbeat to wait for
    hooked.hold.set()

    workers()
    await eventually(
        lambda: finished(jobs_url, appointment),
        30,
        "the released job to run again",
    )
    assert len(hooked.kept_for("reminder_")) == 1


async def test_higher_priority_jobs_go_first_under_a_backlog(
    api: httpx.AsyncClient,
    ward: Hospital,
    jobs_url: str,
    hooked: Receiver,
    workers: Callable[..., Worker],
) -> None:
    before = (await _sql(jobs_url, "SELECT coalesce(max(job_id), 0) AS m FROM pgqueuer_log"))[0]
    # Clinical jobs first, so a first-in-first-out queue would run them first.
    for i in range(12):
        await finish_encounter(api, ward, 1, dt.datetime(2026, 10, i + 1, 10, tzinfo=dt.UTC), 20)
    for _ in range(12):
        await book(api, ward, slot_start(2), practitioner=6)
    last_id = (await _sql(jobs_url, "SELECT max(id) AS m FROM pgqueuer"))[0]["m"]

    workers(HMS_WORKER_CONCURRENCY="2")
    await eventually(
        lambda: drained(jobs_url, "clinical", "reminders"),
        60,
        "the backlog",
    )
    finished = await _sql(
        jobs_url,
        "SELECT entrypoint FROM pgqueuer_log WHERE status = 'successful'"
        " AND job_id > $1 AND job_id <= $2 ORDER BY id",
        before["m"],
        last_id,
    )
    order = [row["entrypoint"] for row in finished]
    assert sorted(order) == ["clinical"] * 12 + ["reminders"] * 12
    last_reminder = max(i for i, queue in enumerate(order) if queue == "reminders")
    # Two at a time: at most one clinical job (taken beside the last reminders) may end first.
    assert order[:last_reminder].count("clinical") <= 1, order


async def test_a_job_reads_only_its_own_hospital(
    api: httpx.AsyncClient, ward: Hospital, jobs_url: str, hooked: Receiver
) -> None:
    """A job's hospital binds its transaction as a request's does: an appointment id from
    another hospital finds nothing (row-level security), so nothing is sent."""
    other = await make_hospital(jobs_url)
    appointment = await book(api, ward, slot_start(2), practitioner=7)
    settings = Settings(database_url=jobs_url, jwt_secret=SECRET, db_pool_size=2)
    database = Database.from_settings(settings)
    owner = create_async_engine(async_url(jobs_url))
    async with httpx.AsyncClient() as http:
        services = Services(settings, database, owner, http)
        body = {"appointment": str(pk(appointment["id"])), "startAt": appointment["startAt"]}
        try:
            await reminders.run(services, JobInput(1, "reminders", other.id, body, 0))
            assert hooked.tries == []
            await reminders.run(services, JobInput(2, "reminders", ward.id, body, 0))
            assert len(hooked.tries) == 1
        finally:
            await database.dispose()
            await owner.dispose()


async def test_a_thousand_bookings_make_a_thousand_reminders_none_twice(
    api: httpx.AsyncClient,
    ward: Hospital,
    jobs_url: str,
    hooked: Receiver,
    workers: Callable[..., Worker],
) -> None:
    # Practitioners no other test books; 40 half-hour slots from now on, all within the lead
    # time, so every reminder is due at once.
    base = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(hours=1)

    async def one(i: int) -> dict[str, Any]:
        start = base + dt.timedelta(minutes=30 * (i // 25))
        return await book(api, ward, start, practitioner=10 + i % 25)

    booked: list[dict[str, Any]] = []
    for chunk in range(0, 1000, 50):
        booked += await asyncio.gather(*(one(i) for i in range(chunk, chunk + 50)))
    assert await queued(jobs_url, "reminders") == 1000

    workers()
    workers()  # two workers share the queue (SKIP LOCKED)
    await eventually(lambda: len(hooked.kept_for("reminder_")) == 1000, 120, "1000 reminders")
    await eventually(
        lambda: drained(jobs_url, "reminders"),
        30,
        "the queue to empty",
    )
    expected = {
        reminders.message_id(pk(a["id"]), dt.datetime.fromisoformat(a["startAt"])) for a in booked
    }
    assert set(hooked.kept_for("reminder_")) == expected
    assert len(hooked.tries) == 1000  # not one delivered twice
    assert hooked.refused == 0


async def test_with_reminders_off_a_booking_enqueues_none(jobs_url: str, ward: Hospital) -> None:
    settings = Settings(
        database_url=jobs_url, jwt_secret=SECRET, phi_keys=(PHI_KEY,), reminders=False
    )
    application: Starlette = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://hms.test") as client:
            appointment = await book(client, ward, slot_start(2), practitioner=8)
    assert appointment["status"] == "BOOKED"
    assert await live_reminders(jobs_url, appointment) == []
