"""Who read or wrote which patient: the audit trail (issue 10).

Every answer's patients are in its audit event, on both execution paths; an operation that
touches no patient leaves none; a write's event commits with the write. The trail is
append-only for the app and for the owner (triggers), chained per hospital, and
``hms audit verify`` finds an edit or a removal made by a superuser around the triggers.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.applications import Starlette

from hms import cli
from hms.persistence import audit
from hms.persistence.urls import async_url
from hms.resolvers.relay import from_global_id, to_global_id
from hms.security.tokens import issue
from tests import fixtures
from tests.api.writes import make_hospital
from tests.conftest import SECRET

Verify = Callable[[str], Awaitable[tuple[int, str]]]

LIST = """
query Ward { patients(first: 10) { edges { node { id mrn
  appointments(first: 2) { edges { node { id reason patient { id } } } }
} } } }
"""


@pytest.fixture(scope="module")
async def clinic(database_url: str, dataset: fixtures.Dataset) -> fixtures.HospitalData:
    """A hospital of its own, so its chain holds only this module's events."""
    return await make_hospital(database_url)


def caller() -> str:
    return f"auditee-{uuid.uuid4().hex[:8]}"


async def post(
    client: httpx.AsyncClient,
    hospital: fixtures.HospitalData,
    subject: str,
    query: str,
    variables: dict[str, Any] | None = None,
    roles: tuple[str, ...] = ("clinician",),
) -> dict[str, Any]:
    bearer = issue(SECRET, subject=subject, hospital_id=hospital.id, roles=roles, client="web")
    response = await client.post(
        "/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {bearer}"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def events(database_url: str, subject: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return list(
            await conn.fetch(
                "SELECT * FROM audit_event WHERE subject = $1 ORDER BY hospital_id, seq", subject
            )
        )
    finally:
        await conn.close()


def patients_in(data: Any) -> set[uuid.UUID]:
    """Every Patient id anywhere in an answer."""
    found: set[uuid.UUID] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "id" and isinstance(item, str):
                    type_name, pk = from_global_id(item)
                    if type_name == "Patient":
                        found.add(pk)
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(data)
    return found


@pytest.mark.parametrize("path", ["compiled", "interpreted"])
async def test_every_patient_an_answer_holds_is_in_its_audit_event(
    path: str,
    client: httpx.AsyncClient,
    interpreted_client: httpx.AsyncClient,
    dataset: fixtures.Dataset,
    database_url: str,
) -> None:
    subject = caller()
    http = client if path == "compiled" else interpreted_client
    body = await post(http, dataset.alpha, subject, LIST)
    assert "errors" not in body
    shown = patients_in(body["data"])
    assert len(shown) == 10
    (event,) = await events(database_url, subject)
    assert set(event["patient_ids"]) == shown
    assert event["hospital_id"] == dataset.alpha.id
    assert (event["operation_type"], event["operation_name"]) == ("query", "Ward")
    assert (event["roles"], event["client"], event["outcome"]) == (["clinician"], "web", "ok")
    assert event["field_classes"] == ["CLINICAL", "DEMOGRAPHIC"]
    assert event["purpose"] == "TREAT"
    # Ids only: no MRN, name or other value of the answer is in the event.
    row = " ".join(str(v) for v in event.values())
    for edge in body["data"]["patients"]["edges"]:
        assert edge["node"]["mrn"] not in row


@pytest.mark.parametrize("path", ["compiled", "interpreted"])
async def test_an_operation_that_touches_no_patient_leaves_no_event(
    path: str,
    client: httpx.AsyncClient,
    interpreted_client: httpx.AsyncClient,
    dataset: fixtures.Dataset,
    database_url: str,
) -> None:
    subject = caller()
    http = client if path == "compiled" else interpreted_client
    for query in (
        "{ patientStats { total } viewer { userId } }",
        "{ practitioners(first: 3) { edges { node { id familyName } } } }",
        "{ patients(first: 3) { totalCount } }",
        f'{{ patient(id: "{to_global_id("Patient", dataset.beta.patients[0])}") {{ id mrn }} }}',
    ):
        body = await post(http, dataset.alpha, subject, query)
        assert "errors" not in body, body
    assert await events(database_url, subject) == []


async def test_a_compiled_read_stays_one_read_only_statement(
    app: Starlette, client: httpx.AsyncClient, dataset: fixtures.Dataset, database_url: str
) -> None:
    """The answer is one statement; its event goes to the batch writer (a connection of its
    own) and is committed before the answer leaves."""
    from hms.persistence.database import OBSERVERS

    seen: list[str] = []
    observers = OBSERVERS.setdefault(app.state.database.primary, [])
    observers.append(seen.append)
    subject = caller()
    try:
        body = await post(client, dataset.alpha, subject, LIST)
    finally:
        observers.remove(seen.append)
    assert "\\u0001" not in str(body)  # the hidden keys never leave
    assert len(seen) == 1
    assert "::text AS data" in seen[0]
    assert len(await events(database_url, subject)) == 1  # already durable


async def test_concurrent_reads_share_audit_transactions(
    app: Starlette, client: httpx.AsyncClient, dataset: fixtures.Dataset, database_url: str
) -> None:
    writer = app.state.audit_writer
    before = writer.batches
    subjects = [caller() for _ in range(30)]
    await asyncio.gather(*(post(client, dataset.alpha, s, LIST) for s in subjects))
    for subject in subjects:  # each answer came back after its event was committed
        assert len(await events(database_url, subject)) == 1
    assert writer.batches - before < 30


async def test_a_read_whose_event_cannot_be_written_is_not_answered(
    settings: Any, dataset: fixtures.Dataset
) -> None:
    from hms.app import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        writer = app.state.audit_writer
        await writer.engine.dispose()
        writer.engine = create_async_engine(
            "postgresql+asyncpg://postgres@127.0.0.1:1/nowhere", connect_args={"timeout": 1}
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hms.test") as http:
            bearer = issue(
                SECRET, subject=caller(), hospital_id=dataset.alpha.id, roles=["clinician"]
            )
            response = await http.post(
                "/graphql", json={"query": LIST}, headers={"Authorization": f"Bearer {bearer}"}
            )
    assert response.status_code == 503
    body = response.json()
    assert "data" not in body
    assert body["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"


async def test_a_write_and_its_event_commit_together(
    client: httpx.AsyncClient, clinic: fixtures.HospitalData, database_url: str
) -> None:
    subject = caller()
    create = (
        "mutation Register($input: CreatePatientInput!) { createPatient(input: $input)"
        " { patient { id } userErrors { code } } }"
    )
    made = await post(
        client,
        clinic,
        subject,
        create,
        {"input": {"mrn": f"AU-{uuid.uuid4().hex[:6]}", "givenName": "Ada", "familyName": "Q"}},
    )
    pk = from_global_id(made["data"]["createPatient"]["patient"]["id"])[1]
    # A refused write (the MRN exists) touches nobody: no event.
    taken = await post(
        client, clinic, subject, create,
        {"input": {"mrn": "W0", "givenName": "Ada", "familyName": "Q"}},
    )  # fmt: skip
    assert taken["data"]["createPatient"]["userErrors"] == [{"code": "VALIDATION"}]
    (event,) = await events(database_url, subject)
    assert event["operation_type"] == "mutation"
    assert event["operation_name"] == "Register"
    assert list(event["patient_ids"]) == [pk]


async def test_the_trail_is_append_only(
    clinic: fixtures.HospitalData, client: httpx.AsyncClient, database_url: str
) -> None:
    await post(client, clinic, caller(), "{ patients(first: 1) { edges { node { id } } } }")
    conn = await asyncpg.connect(database_url)
    try:
        # The app's role: no UPDATE, DELETE or TRUNCATE at all.
        async with conn.transaction():
            await conn.execute("SET LOCAL ROLE hms_app")
            await conn.execute(f"SET LOCAL app.hospital_id = '{clinic.id}'")
            for sql in (
                "UPDATE audit_event SET subject = 'x'",
                "DELETE FROM audit_event",
                "TRUNCATE audit_event",
                "UPDATE audit_head SET seq = 0",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    async with conn.transaction():
                        await conn.execute(sql)
        # The owner (here a superuser): the triggers refuse.
        for sql in (
            "UPDATE audit_event SET subject = 'x'",
            "DELETE FROM audit_event",
            "TRUNCATE audit_event, audit_patient",
            "TRUNCATE audit_patient",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def hms_verify(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str], Awaitable[tuple[int, str]]]:
    """``hms audit verify --hospital SLUG``, its exit code and what it said."""
    monkeypatch.setenv("HMS_DATABASE_URL", database_url)
    monkeypatch.setenv("HMS_JWT_SECRET", SECRET)

    def run(slug: str) -> tuple[int, str]:
        out = io.StringIO()
        with contextlib.redirect_stderr(out), contextlib.redirect_stdout(out):
            code = cli.main(["audit", "verify", "--hospital", slug])
        return code, out.getvalue()

    async def verify(slug: str) -> tuple[int, str]:
        return await asyncio.to_thread(run, slug)

    return verify


@pytest.fixture
async def tampered(
    database_url: str, client: httpx.AsyncClient
) -> AsyncIterator[tuple[fixtures.HospitalData, asyncpg.Connection]]:
    """A hospital with a chain of concurrent reads, and a superuser connection."""
    hospital = await make_hospital(database_url)
    subject = caller()
    await asyncio.gather(
        *(
            post(client, hospital, subject, "{ patients(first: 2) { edges { node { id } } } }")
            for _ in range(12)
        )
    )
    engine = create_async_engine(async_url(database_url))
    try:
        await audit.seal(engine)
    finally:
        await engine.dispose()
    conn = await asyncpg.connect(database_url)
    try:
        yield hospital, conn
    finally:
        await conn.close()


async def test_verify_finds_a_clean_chain_intact(
    tampered: tuple[fixtures.HospitalData, asyncpg.Connection], hms_verify: Verify
) -> None:
    hospital, conn = tampered
    seqs = [r[0] for r in await conn.fetch(
        "SELECT seq FROM audit_event WHERE hospital_id = $1 ORDER BY seq", hospital.id
    )]  # fmt: skip
    assert seqs == list(range(1, 13))  # twelve concurrent appends, one chain, no gaps
    code, said = await hms_verify(hospital.slug)
    assert code == 0, said
    assert "12 events, chain intact" in said


#: A careful tamperer removes the event and its index entries in one statement.
DELETE = (
    "WITH gone AS (DELETE FROM audit_patient WHERE hospital_id = $1 AND event_id IN"
    " (SELECT id FROM audit_event WHERE hospital_id = $1 AND seq = {seq}))"
    " DELETE FROM audit_event WHERE hospital_id = $1 AND seq = {seq}"
)


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        ("UPDATE audit_event SET patient_ids = '{}' WHERE hospital_id = $1 AND seq = 5",
         "event 5: its contents changed"),
        (DELETE.format(seq=7), "event 8: does not follow"),
        (DELETE.format(seq=12), "events were removed"),
    ],
)  # fmt: skip
async def test_verify_finds_what_a_superuser_changed_around_the_triggers(
    tampered: tuple[fixtures.HospitalData, asyncpg.Connection],
    hms_verify: Verify,
    edit: str,
    words: str,
) -> None:
    hospital, conn = tampered
    async with conn.transaction():
        await conn.execute("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only")
        await conn.execute("ALTER TABLE audit_patient DISABLE TRIGGER audit_patient_append_only")
        await conn.execute(edit, hospital.id)
        await conn.execute("ALTER TABLE audit_patient ENABLE TRIGGER audit_patient_append_only")
        await conn.execute("ALTER TABLE audit_event ENABLE TRIGGER audit_event_append_only")
    code, said = await hms_verify(hospital.slug)
    assert code == 1
    assert "BROKEN" in said
    assert words in said


async def test_the_canonical_text_matches_the_trigger(
    tampered: tuple[fixtures.HospitalData, asyncpg.Connection], database_url: str
) -> None:
    """hms/persistence/audit.py and migration 0005 write the hashed text the same way."""
    hospital, _ = tampered
    engine = create_async_engine(async_url(database_url))
    try:
        checked, problems = await audit.verify(engine, hospital.id)
    finally:
        await engine.dispose()
    assert (checked, problems) == (12, [])


async def test_each_worker_seals_new_events_within_its_interval(
    settings: Any, clinic: fixtures.HospitalData, database_url: str
) -> None:
    from hms.app import create_app

    app = create_app(settings.with_(audit_seal_seconds=0.2))
    subject = caller()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hms.test") as http:
            await post(http, clinic, subject, "{ patients(first: 1) { edges { node { id } } } }")
        await asyncio.sleep(0.8)
    (event,) = await events(database_url, subject)
    assert event["seq"] is not None
    assert event["hash"] is not None


class RolledBack(Exception):
    pass


async def test_an_insert_cannot_bring_its_own_seal_or_time(
    clinic: fixtures.HospitalData, database_url: str
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL ROLE hms_app")
            await conn.execute(f"SET LOCAL app.hospital_id = '{clinic.id}'")
            row = await conn.fetchrow(
                "INSERT INTO audit_event (hospital_id, subject, roles, operation_type,"
                " patient_ids, field_classes, outcome, seq, hash, prev_hash, at)"
                " VALUES ($1, 'forger', '{}', 'query', '{}', '{}', 'ok', 1, '\\x00', '\\x00',"
                " '2001-01-01') RETURNING seq, hash, prev_hash, at",
                clinic.id,
            )
            assert row is not None
            assert (row["seq"], row["hash"], row["prev_hash"]) == (None, None, None)
            assert row["at"].year > 2001
            raise RolledBack  # keep the trail of the shared database clean
    except RolledBack:
        pass
    finally:
        await conn.close()


TRAIL = """
query Trail($id: ID!, $first: Int, $after: String) {
  auditTrail(patientId: $id, first: $first, after: $after) {
    edges { cursor node { seq userId roles client operationType operationName fieldClasses
                          purpose outcome at } }
    pageInfo { hasNextPage endCursor }
  }
}
"""


async def test_auditors_see_who_viewed_a_patient_newest_first(
    client: httpx.AsyncClient, clinic: fixtures.HospitalData, database_url: str
) -> None:
    patient = to_global_id("Patient", clinic.patients[0])
    viewers = [caller() for _ in range(3)]
    for subject in viewers:
        await post(client, clinic, subject, f'query Look {{ patient(id: "{patient}") {{ mrn }} }}')
    engine = create_async_engine(async_url(database_url))
    try:
        await audit.seal(engine)
    finally:
        await engine.dispose()
    pages: list[dict[str, Any]] = []
    after = None
    while True:
        body = await post(
            client, clinic, caller(), TRAIL, {"id": patient, "first": 2, "after": after},
            roles=("auditor",),
        )  # fmt: skip
        assert "errors" not in body, body
        pages.append(body["data"]["auditTrail"])
        if not pages[-1]["pageInfo"]["hasNextPage"]:
            break
        after = pages[-1]["pageInfo"]["endCursor"]
    nodes = [edge["node"] for page in pages for edge in page["edges"]]
    mine = [n for n in nodes if n["userId"] in viewers]
    assert [n["userId"] for n in mine] == viewers[::-1]  # newest first
    assert all(n["operationName"] == "Look" and n["fieldClasses"] == ["DEMOGRAPHIC"] for n in mine)
    seqs = [n["seq"] for n in nodes]
    assert seqs == sorted(seqs, reverse=True)
    # Reading the trail names no patient: it leaves no event of its own.
    assert all(n["operationName"] != "Trail" for n in nodes)


@pytest.mark.parametrize("roles", [("clinician",), ("front_desk",), ("service",)])
async def test_only_auditors_and_administrators_read_the_trail(
    client: httpx.AsyncClient, clinic: fixtures.HospitalData, roles: tuple[str, ...]
) -> None:
    body = await post(
        client, clinic, caller(), TRAIL, {"id": to_global_id("Patient", clinic.patients[0])},
        roles=roles,
    )  # fmt: skip
    assert body["data"] == {"auditTrail": None}
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "FORBIDDEN"


async def test_the_trail_refuses_bad_arguments_and_shows_no_other_hospital(
    client: httpx.AsyncClient, clinic: fixtures.HospitalData, dataset: fixtures.Dataset
) -> None:
    mine = to_global_id("Patient", clinic.patients[0])
    for variables, words in (
        ({"id": mine, "after": "bm90LWEtY3Vyc29y"}, "Invalid cursor"),
        ({"id": mine, "first": 101}, "'first' must be between 0 and 100"),
        ({"id": to_global_id("Practitioner", clinic.practitioners[0])}, "expected a Patient id"),
    ):
        body = await post(client, clinic, caller(), TRAIL, variables, roles=("auditor",))
        assert words in body["errors"][0]["message"], body
    # Another hospital's patient, as this hospital's auditor: nothing, as if it had no events.
    foreign = to_global_id("Patient", dataset.alpha.patients[0])
    body = await post(client, clinic, caller(), TRAIL, {"id": foreign}, roles=("auditor",))
    assert body["data"]["auditTrail"]["edges"] == []


@pytest.mark.parametrize("path", ["compiled", "interpreted"])
async def test_the_trace_id_is_in_the_event_and_the_answer(
    path: str,
    client: httpx.AsyncClient,
    interpreted_client: httpx.AsyncClient,
    dataset: fixtures.Dataset,
    database_url: str,
) -> None:
    """The caller's trace continues (its id in the event and in ``traceresponse``); without a
    valid ``traceparent`` (a malformed one is ignored, as W3C says) the request has a fresh
    one, the same in both places."""
    http = client if path == "compiled" else interpreted_client
    trace = uuid.uuid4().hex
    for header in (f"00-{trace}-00f067aa0ba902b7-01", "00-not-a-trace-01", None):
        subject = caller()
        bearer = issue(SECRET, subject=subject, hospital_id=dataset.alpha.id, roles=["clinician"])
        headers = {"Authorization": f"Bearer {bearer}"}
        if header is not None:
            headers["traceparent"] = header
        response = await http.post("/graphql", json={"query": LIST}, headers=headers)
        assert response.status_code == 200
        version, answered, span, _flags = response.headers["traceresponse"].split("-")
        assert (version, len(answered), len(span)) == ("00", 32, 16)
        (event,) = await events(database_url, subject)
        assert event["trace_id"] == answered
        assert (answered == trace) == (header is not None and "not" not in header)


def hms(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


async def test_an_anchor_finds_a_chain_rewritten_with_its_hashes(
    tampered: tuple[fixtures.HospitalData, asyncpg.Connection],
    hms_verify: Verify,
    tmp_path: Any,
) -> None:
    """A superuser who edits event 5 and reseals everything after it leaves a chain that is
    intact in itself; the head recorded outside the database before says it was rewritten."""
    hospital, conn = tampered
    code, out, _ = await asyncio.to_thread(hms, "audit", "anchor", "--hospital", hospital.slug)
    assert code == 0
    (line,) = out.splitlines()
    anchor = json.loads(line)
    assert (anchor["hospital"], anchor["hospitalId"], anchor["seq"]) == (
        hospital.slug,
        str(hospital.id),
        12,
    )
    anchors = tmp_path / "anchors.jsonl"
    anchors.write_text(line + "\n")
    async with conn.transaction():
        await conn.execute("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only")
        await conn.execute(
            "UPDATE audit_event SET patient_ids = '{}' WHERE hospital_id = $1 AND seq = 5",
            hospital.id,
        )
        await conn.execute(
            "UPDATE audit_event SET seq = NULL, prev_hash = NULL, hash = NULL"
            " WHERE hospital_id = $1 AND seq >= 5",
            hospital.id,
        )
        await conn.execute(
            "UPDATE audit_head SET seq = 4, hash = (SELECT hash FROM audit_event"
            " WHERE hospital_id = $1 AND seq = 4) WHERE hospital_id = $1",
            hospital.id,
        )
        await conn.execute("SELECT audit_seal($1)", hospital.id)
        await conn.execute("ALTER TABLE audit_event ENABLE TRIGGER audit_event_append_only")
    code, said = await hms_verify(hospital.slug)
    assert (code, "12 events, chain intact" in said) == (0, True)  # rewritten consistently
    code, _, said = await asyncio.to_thread(
        hms, "audit", "verify", "--hospital", hospital.slug, "--anchors", str(anchors)
    )
    assert code == 1
    assert "event 12 differs from its anchor: the chain was rewritten" in said

    anchors.write_text('{"hospitalId": "x"}\n')
    code, _, said = await asyncio.to_thread(
        hms, "audit", "verify", "--hospital", hospital.slug, "--anchors", str(anchors)
    )
    assert code == 2
    assert "line 1 is not an anchor" in said


async def test_a_stalled_sealer_holds_up_no_request(
    client: httpx.AsyncClient, clinic: fixtures.HospitalData, database_url: str
) -> None:
    """A sealer whose commit is late (a stalled worker) keeps its hospital's head row locked;
    reads of that hospital still answer at once, and their events join the chain later."""
    subject = caller()
    await post(client, clinic, subject, "{ patients(first: 1) { edges { node { id } } } }")
    stalled = await asyncpg.connect(database_url)
    try:
        await stalled.execute("BEGIN")
        await stalled.execute("SELECT audit_seal($1)", clinic.id)  # holds the head, uncommitted
        started = asyncio.get_running_loop().time()
        for _ in range(3):
            body = await asyncio.wait_for(
                post(client, clinic, subject, "{ patients(first: 1) { edges { node { id } } } }"),
                timeout=5,
            )
            assert "errors" not in body
        assert asyncio.get_running_loop().time() - started < 5
        await stalled.execute("COMMIT")
    finally:
        await stalled.close()
    assert len(await events(database_url, subject)) == 4
