"""Persisted documents over HTTP: the three protocols, the modes, HTTP caching (issue 8).

One app serves every mode through client names: no name is the default (``open`` in dev),
``web`` is ``apq``, ``ios`` is ``trusted``, ``tester`` is ``audit``. Trusted documents are pushed
into the real PostgreSQL registry; automatic registrations go to the cache (Redis here).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as redis
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.applications import Starlette

from hms.app import create_app
from hms.cache import keys
from hms.documents.persisted import (
    APQ_TTL_SECONDS,
    RECHECK_SECONDS,
    TRUSTED_TTL_SECONDS,
    document_id,
)
from hms.persistence import documents
from hms.persistence.urls import async_url
from hms.security.tokens import issue
from hms.settings import Settings
from tests import fixtures
from tests.conftest import SECRET, token, without_cost

GRAPHQL_RESPONSE = "application/graphql-response+json"
REDIS = "redis://127.0.0.1:6379/0"

PRACTITIONERS = "query Team { practitioners(first: 3) { edges { node { id familyName } } } }"
STATS = "query Stats { patientStats { total } }"
UNREGISTERED = "query Other { patientStats { active } }"
CREATE = (
    'mutation New { createPatient(input: {mrn: "PQ-1", givenName: "Per", familyName: "Sisted"})'
    " { patient { mrn } } }"
)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def push(database_url: str, *bodies: str, client: str = "ios") -> None:
    engine = create_async_engine(async_url(database_url))
    try:
        entries = [
            documents.Entry(document_id(body), body, body.split()[1], body.split()[0])
            for body in bodies
        ]
        await documents.push(engine, entries, client, "1.0.0")
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
async def pq_app(
    settings: Settings, database_url: str, dataset: fixtures.Dataset
) -> AsyncIterator[Starlette]:
    await push(database_url, PRACTITIONERS, STATS, CREATE)
    app = create_app(
        settings.with_(
            redis_url=REDIS,
            document_modes={"web": "apq", "ios": "trusted", "tester": "audit"},
            apq_registrations_per_minute=3,
        )
    )
    async with app.router.lifespan_context(app):
        yield app


async def call(
    app: Starlette,
    hospital: fixtures.HospitalData,
    *,
    client: str | None = None,
    get: bool = False,
    headers: dict[str, str] | None = None,
    **params: Any,
) -> httpx.Response:
    all_headers = {"Authorization": f"Bearer {token(hospital)}", **(headers or {})}
    if client is not None:
        all_headers["apollographql-client-name"] = client
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hms.test") as http:
        if get:
            query = {
                k: v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in params.items()
            }
            return await http.get("/graphql", params=query, headers=all_headers)
        return await http.post("/graphql", json=params, headers=all_headers)


def apq(text: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": sha(text)}}


def code(response: httpx.Response) -> str:
    return str(response.json()["errors"][0]["extensions"]["code"])


async def test_automatic_persisted_queries_register_then_hit(
    pq_app: Starlette, dataset: fixtures.Dataset
) -> None:
    text = f"query Fresh{uuid.uuid4().hex[:8]} {{ patientStats {{ total }} }}"
    missing = await call(pq_app, dataset.alpha, extensions=apq(text))
    assert missing.status_code == 200  # Apollo clients retry with the text only on this
    assert without_cost(missing.json()) == {
        "errors": [
            {
                "message": "PersistedQueryNotFound",
                "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"},
            }
        ]
    }
    registered = await call(pq_app, dataset.alpha, query=text, extensions=apq(text))
    assert without_cost(registered.json()) == {"data": {"patientStats": {"total": 120}}}
    hit = await call(pq_app, dataset.alpha, extensions=apq(text))
    assert without_cost(hit.json()) == {"data": {"patientStats": {"total": 120}}}
    # Another worker (another app, the same Redis) finds it too.
    other = create_app(pq_app.state.pipeline.settings)
    async with other.router.lifespan_context(other):
        again = await call(other, dataset.alpha, extensions=apq(text))
        assert without_cost(again.json()) == without_cost(hit.json())


async def test_a_hash_that_is_not_the_texts_is_refused(
    pq_app: Starlette, dataset: fixtures.Dataset
) -> None:
    """A collision attempt: a valid hash, another document."""
    response = await call(pq_app, dataset.alpha, query=UNREGISTERED, extensions=apq(STATS))
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"] == "provided sha does not match query"


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"extensions": {"persistedQuery": {"version": 2, "sha256Hash": sha(STATS)}}}, "version"),
        ({"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "abc"}}}, "64 lowercase"),
        (
            {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha(STATS).upper()}}},
            "64 lowercase",
        ),
        (
            {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "z" * 64}}},
            "64 lowercase",
        ),
        ({"extensions": {"persistedQuery": {"version": 1}}}, "must be a string"),
        ({"documentId": sha(STATS)}, "'sha256:'"),
        ({"documentId": "md5:" + "a" * 32}, "'sha256:'"),
        ({"documentId": "sha256:" + "a" * 65}, "64 lowercase"),
        ({"doc_id": 42}, "must be a string"),
        ({"documentId": document_id(STATS), "doc_id": sha(STATS)}, "once"),
    ],
)
async def test_malformed_ids_are_400(
    pq_app: Starlette, dataset: fixtures.Dataset, params: dict[str, Any], fragment: str
) -> None:
    response = await call(pq_app, dataset.alpha, **params)
    assert response.status_code == 400
    assert "data" not in response.json()
    assert fragment in response.json()["errors"][0]["message"]


async def test_document_ids_run_registry_documents(
    pq_app: Starlette, dataset: fixtures.Dataset
) -> None:
    ids: list[dict[str, Any]] = [
        {"documentId": document_id(STATS)},
        {"doc_id": sha(STATS)},
        {"doc_id": document_id(STATS)},
    ]
    for params in ids:
        for client in (None, "ios", "web"):
            response = await call(pq_app, dataset.alpha, client=client, **params)
            assert without_cost(response.json()) == {"data": {"patientStats": {"total": 120}}}, (
                params,
                client,
            )


async def test_an_id_with_the_document_is_refused(
    pq_app: Starlette, dataset: fixtures.Dataset
) -> None:
    response = await call(pq_app, dataset.alpha, documentId=document_id(STATS), query=STATS)
    assert response.status_code == 400
    assert code(response) == "CANNOT_SEND_PQ_ID_AND_BODY"


async def test_trusted_clients_run_registered_documents_only(
    pq_app: Starlette, dataset: fixtures.Dataset
) -> None:
    alpha = dataset.alpha
    by_hash = await call(pq_app, alpha, client="ios", extensions=apq(STATS))
    assert without_cost(by_hash.json()) == {"data": {"patientStats": {"total": 120}}}
    by_text = await call(pq_app, alpha, client="ios", query=STATS)
    assert without_cost(by_text.json()) == without_cost(by_hash.json())

    unregistered = await call(pq_app, alpha, client="ios", query=UNREGISTERED)
    assert unregistered.status_code == 403
    assert code(unregistered) == "PERSISTED_QUERY_NOT_IN_LIST"
    unknown = await call(pq_app, alpha, client="ios", extensions=apq(UNREGISTERED))
    assert unknown.status_code == 403  # never PersistedQueryNotFound: Apollo will not register
    assert code(unknown) == "PERSISTED_QUERY_NOT_IN_LIST"
    registering = await call(
        pq_app, alpha, client="ios", query=UNREGISTERED, extensions=apq(UNREGISTERED)
    )
    assert registering.status_code == 400
    assert code(registering) == "PERSISTED_QUERY_NOT_SUPPORTED"
    nothing = await call(pq_app, alpha, client="ios", variables={})
    assert nothing.status_code == 400
    assert code(nothing) == "PERSISTED_QUERY_ID_REQUIRED"


async def test_automatic_registrations_do_not_make_a_document_trusted(
    pq_app: Starlette, dataset: fixtures.Dataset
) -> None:
    text = f"query Sneak{uuid.uuid4().hex[:8]} {{ patientStats {{ total }} }}"
    await call(pq_app, dataset.alpha, query=text, extensions=apq(text))  # registered (open)
    response = await call(pq_app, dataset.alpha, client="ios", extensions=apq(text))
    assert code(response) == "PERSISTED_QUERY_NOT_IN_LIST"


async def test_retired_documents_stop_running(
    pq_app: Starlette, dataset: fixtures.Dataset, database_url: str
) -> None:
    text = f"query Old{uuid.uuid4().hex[:8]} {{ patientStats {{ total }} }}"
    await push(database_url, text)
    fresh = create_app(pq_app.state.pipeline.settings.with_(redis_url=None))  # no warm tiers
    async with fresh.router.lifespan_context(fresh):
        assert (
            "data" in (await call(fresh, dataset.alpha, client="ios", extensions=apq(text))).json()
        )
    engine = create_async_engine(async_url(database_url))
    try:
        assert await documents.retire(engine, document_id(text), dt.datetime.now(dt.UTC))
    finally:
        await engine.dispose()
    fresh = create_app(pq_app.state.pipeline.settings.with_(redis_url=None))
    async with fresh.router.lifespan_context(fresh):
        response = await call(fresh, dataset.alpha, client="ios", extensions=apq(text))
    assert code(response) == "PERSISTED_QUERY_NOT_IN_LIST"


async def test_a_running_worker_stops_serving_a_retired_document_within_the_recheck(
    pq_app: Starlette, dataset: fixtures.Dataset, database_url: str
) -> None:
    """Retirement reaches a warm worker: its own copy is asked about again after a minute."""
    text = f"query Warm{uuid.uuid4().hex[:8]} {{ patientStats {{ total }} }}"
    await push(database_url, text)
    app = create_app(pq_app.state.pipeline.settings)
    now = [1000.0]
    async with app.router.lifespan_context(app):
        app.state.pipeline.store.clock = lambda: now[0]
        served = await call(app, dataset.alpha, client="ios", extensions=apq(text))
        assert served.json()["data"]["patientStats"]["total"] == 120
        engine = create_async_engine(async_url(database_url))
        try:
            assert await documents.retire(engine, document_id(text), dt.datetime.now(dt.UTC))
        finally:
            await engine.dispose()
        await app.state.pipeline.cache.delete(keys.trusted_document(sha(text)))  # as the CLI
        now[0] += RECHECK_SECONDS - 1
        still = await call(app, dataset.alpha, client="ios", extensions=apq(text))
        assert "data" in still.json()  # the bounded window: this worker's copy is recent
        now[0] += 2
        gone = await call(app, dataset.alpha, client="ios", extensions=apq(text))
        assert code(gone) == "PERSISTED_QUERY_NOT_IN_LIST"
        full = await call(app, dataset.alpha, client="ios", query=text)
        assert code(full) == "PERSISTED_QUERY_NOT_IN_LIST"


async def test_cached_copies_expire(pq_app: Starlette, dataset: fixtures.Dataset) -> None:
    """Automatic registrations and registry copies in Redis carry a TTL: Redis never fills up."""
    text = f"query Ttl{uuid.uuid4().hex[:8]} {{ patientStats {{ total }} }}"
    trusted = f"query TtlTrusted{uuid.uuid4().hex[:8]} {{ patientStats {{ total }} }}"
    await push(pq_app.state.pipeline.settings.database_url, trusted)
    await call(pq_app, dataset.alpha, query=text, extensions=apq(text))
    await call(pq_app, dataset.alpha, client="ios", extensions=apq(trusted))
    client = redis.Redis.from_url(REDIS)
    try:
        apq_ttl = await client.ttl("hms:" + keys.apq_document(sha(text)))
        trusted_ttl = await client.ttl("hms:" + keys.trusted_document(sha(trusted)))
    finally:
        await client.aclose()
    assert APQ_TTL_SECONDS - 60 < apq_ttl <= APQ_TTL_SECONDS
    assert 0 < trusted_ttl <= TRUSTED_TTL_SECONDS


async def test_apq_registration_is_rate_limited(
    pq_app: Starlette, ward: fixtures.HospitalData
) -> None:
    """Three registrations a minute for this app's callers: the fourth runs, unregistered."""
    texts = [f"query R{i}{uuid.uuid4().hex[:6]} {{ patientStats {{ total }} }}" for i in range(4)]
    for text in texts:
        response = await call(pq_app, ward, client="web", query=text, extensions=apq(text))
        assert response.json()["data"]["patientStats"]["total"] == 2
    found = [
        "data" in (await call(pq_app, ward, client="web", extensions=apq(text))).json()
        for text in texts
    ]
    assert found == [True, True, True, False]


async def test_documents_past_the_size_cap_run_but_are_not_kept(
    settings: Settings, dataset: fixtures.Dataset
) -> None:
    app = create_app(settings.with_(apq_max_bytes=100))
    text = "query Big { patientStats { total } }" + " " * 200
    async with app.router.lifespan_context(app):
        ran = await call(app, dataset.alpha, query=text, extensions=apq(text))
        assert without_cost(ran.json()) == {"data": {"patientStats": {"total": 120}}}
        again = await call(app, dataset.alpha, extensions=apq(text))
    assert code(again) == "PERSISTED_QUERY_NOT_FOUND"


async def test_audit_mode_runs_and_logs_documents_outside_the_registry(
    pq_app: Starlette, dataset: fixtures.Dataset, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hms.pipeline")
    response = await call(pq_app, dataset.alpha, client="tester", query=UNREGISTERED)
    assert "data" in response.json()
    assert f"document {document_id(UNREGISTERED)} outside the registry" in caplog.text
    assert "patientStats" not in caplog.text  # the id, never the text


async def test_get_answers_carry_etags_and_cache_control(
    pq_app: Starlette, dataset: fixtures.Dataset
) -> None:
    team = await call(pq_app, dataset.alpha, get=True, documentId=document_id(PRACTITIONERS))
    assert team.status_code == 200
    assert team.headers["cache-control"] == "private, max-age=300"  # reference data only
    etag = team.headers["etag"]
    again = await call(
        pq_app,
        dataset.alpha,
        get=True,
        documentId=document_id(PRACTITIONERS),
        headers={"If-None-Match": etag},
    )
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag

    stats = await call(pq_app, dataset.alpha, get=True, documentId=document_id(STATS))
    assert stats.headers["cache-control"] == "no-store"  # patient data
    posted = await call(pq_app, dataset.alpha, documentId=document_id(PRACTITIONERS))
    assert posted.headers["cache-control"] == "no-store"


async def test_a_persisted_mutation_over_get_is_405(
    pq_app: Starlette, dataset: fixtures.Dataset
) -> None:
    response = await call(pq_app, dataset.alpha, get=True, documentId=document_id(CREATE))
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


async def test_a_cache_outage_serves_trusted_documents_from_postgresql(
    settings: Settings, dataset: fixtures.Dataset
) -> None:
    app = create_app(
        settings.with_(
            redis_url="redis://127.0.0.1:1/0",
            document_modes={"ios": "trusted"},
            cost_fail_open_roles=frozenset({"clinician"}),  # the budget store is down too
        )
    )
    text = f"query Down{uuid.uuid4().hex[:8]} {{ patientStats {{ total }} }}"
    async with app.router.lifespan_context(app):
        trusted = await call(app, dataset.alpha, client="ios", extensions=apq(STATS))
        assert without_cost(trusted.json()) == {"data": {"patientStats": {"total": 120}}}
        registering = await call(app, dataset.alpha, query=text, extensions=apq(text))
        assert without_cost(registering.json()) == {"data": {"patientStats": {"total": 120}}}
        # The document is remembered by this worker even though the cache took nothing.
        metrics = (
            await httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://hms.test"
            ).get("/metrics")
        ).text
    assert 'hms_documents_total{outcome="unavailable",tier="cache"}' in metrics
    assert 'hms_documents_total{outcome="hit",tier="registry"}' in metrics


async def test_a_get_without_a_bearer_token_changes_nothing(
    pq_app: Starlette, dataset: fixtures.Dataset
) -> None:
    """What a cross-site page can make a browser send: a GET with no Authorization header.

    It is refused before the document is looked at, so it cannot even register a document.
    """
    text = f"query Csrf{uuid.uuid4().hex[:8]} {{ patientStats {{ total }} }}"
    params = {"query": text, "extensions": orjson.dumps(apq(text)).decode()}
    transport = httpx.ASGITransport(app=pq_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hms.test") as http:
        response = await http.get("/graphql", params=params)
    assert response.status_code == 401
    assert "access-control-allow-origin" not in response.headers
    found = await call(pq_app, dataset.alpha, extensions=apq(text))
    assert code(found) == "PERSISTED_QUERY_NOT_FOUND"


async def test_a_header_cannot_step_out_of_trusted_but_the_token_s_client_can(
    settings: Settings, dataset: fixtures.Dataset
) -> None:
    """The client-name header is the caller's say-so; the token's ``azp`` is the issuer's."""
    app = create_app(
        settings.with_(
            redis_url=REDIS,
            document_mode="trusted",
            document_modes={"web": "apq", "ios": "trusted", "dev": "open"},
        )
    )
    text = f"query Loose{uuid.uuid4().hex[:8]} {{ patientStats {{ total }} }}"

    def bearer(client: str | None) -> dict[str, str]:
        signed = issue(
            SECRET, subject="tester", hospital_id=dataset.alpha.id, roles=["admin"], client=client
        )
        return {"Authorization": f"Bearer {signed}"}

    async with app.router.lifespan_context(app):
        for name in ("web", "dev", "unknown", None):
            by_header = await call(app, dataset.alpha, client=name, query=text)
            assert code(by_header) == "PERSISTED_QUERY_NOT_IN_LIST", name
        web = await call(app, dataset.alpha, headers=bearer("web"), query=text)
        assert web.json()["data"]["patientStats"]["total"] == 120
        # The claim decides even against a header naming a looser client.
        ios = await call(app, dataset.alpha, client="dev", headers=bearer("ios"), query=text)
        assert code(ios) == "PERSISTED_QUERY_NOT_IN_LIST"
        # A client the configuration does not name gets the default.
        other = await call(app, dataset.alpha, headers=bearer("kiosk"), query=text)
        assert code(other) == "PERSISTED_QUERY_NOT_IN_LIST"
    loose = create_app(settings.with_(redis_url=REDIS, document_modes={"ios": "trusted"}))
    async with loose.router.lifespan_context(loose):
        # A header may always ask for a stricter mode than the default.
        stricter = await call(loose, dataset.alpha, client="ios", query=text)
        assert code(stricter) == "PERSISTED_QUERY_NOT_IN_LIST"
