"""Reads on a real streaming replica (issue 12): queries go to the standby, writes to the
primary; a user reads their own writes even while the standby lags; a replica that is down or
lagging is out of rotation and back when well, and no read fails while the primary is up.

The pair is tests/replication.py's: a dedicated primary and a hot standby streaming from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.applications import Starlette

from hms.app import create_app
from hms.resolvers.relay import from_global_id
from hms.security.tokens import issue
from hms.settings import Settings
from tests.api.writes import CREATE_PATIENT
from tests.conftest import SECRET
from tests.replication import ReplicaPair
from tests.statements import recorded

ONE = "query One($id: ID!) { patient(id: $id) { id mrn } }"


@contextlib.asynccontextmanager
async def served(
    settings: Settings, pair: ReplicaPair, **changes: Any
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    app = create_app(
        settings.with_(
            **{
                "database_url": pair.primary_url,
                "database_replica_urls": (pair.standby_url,),
                "replica_check_seconds": 0.1,
                **changes,
            }
        )
    )
    async with app.router.lifespan_context(app):
        # As on a running server, the hospitals are known already (that lookup is the primary's).
        for hospital in (pair.dataset.alpha, pair.dataset.beta):
            assert await app.state.pipeline.authenticator.tenants.exists(hospital.id)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hms.test") as client:
            yield app, client


async def ask(
    client: httpx.AsyncClient,
    pair: ReplicaPair,
    query: str,
    variables: dict[str, Any] | None = None,
    subject: str = "reader",
) -> dict[str, Any]:
    bearer = issue(SECRET, subject=subject, hospital_id=pair.dataset.alpha.id, roles=["clinician"])
    response = await client.post(
        "/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {bearer}"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def until(check: Any, seconds: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "not within the time"
        await asyncio.sleep(0.05)


async def test_queries_go_to_the_standby_and_writes_to_the_primary(
    settings: Settings, replica: ReplicaPair
) -> None:
    async with served(settings, replica) as (app, client):
        database = app.state.database
        (standby,) = database.replicas
        await until(lambda: database.routing.replicas[0].healthy)
        with recorded(database.primary) as on_primary, recorded(standby) as on_standby:
            body = await ask(client, replica, "{ patients(first: 3) { edges { node { id } } } }")
        assert len(body["data"]["patients"]["edges"]) == 3
        assert (on_primary, len(on_standby)) == ([], 1)

        variables = {
            "input": {"mrn": f"R-{uuid.uuid4().hex[:6]}", "givenName": "R", "familyName": "P"}
        }
        with recorded(database.primary) as on_primary, recorded(standby) as on_standby:
            made = await ask(client, replica, CREATE_PATIENT, variables, subject="writer")
        assert made["data"]["createPatient"]["userErrors"] == []
        assert on_primary
        assert on_standby == []


async def test_a_user_reads_their_own_writes_while_the_standby_lags(
    settings: Settings, replica: ReplicaPair
) -> None:
    """Replay paused: each patient the writer creates is at once visible to the writer (20 of
    20: their reads go to the primary), while another user's reads, on the paused standby, do
    not see them; once replay resumes, the writer's reads return to the standby."""
    async with served(settings, replica, replica_max_lag_bytes=1 << 40) as (app, client):
        routing = app.state.database.routing
        await until(lambda: routing.replicas[0].healthy)
        await replica.pause_replay()
        made = []
        for n in range(20):
            variables = {
                "input": {
                    "mrn": f"RYW-{n}-{uuid.uuid4().hex[:6]}",
                    "givenName": "R",
                    "familyName": "W",
                }
            }
            body = await ask(client, replica, CREATE_PATIENT, variables, subject="writer")
            pk = body["data"]["createPatient"]["patient"]["id"]
            seen = await ask(client, replica, ONE, {"id": pk}, subject="writer")
            made.append((pk, seen["data"]["patient"]))
        assert [found is not None for _, found in made] == [True] * 20
        # Someone who wrote nothing reads from the standby, which has not replayed them.
        others = [
            await ask(client, replica, ONE, {"id": pk}, subject="other") for pk, _ in made[:3]
        ]
        assert [o["data"]["patient"] for o in others] == [None, None, None]
        assert routing.replicas[0].healthy  # lagging within the limit: still in rotation

        await replica.resume_replay()
        await replica.wait_replayed()
        await asyncio.sleep(0.3)  # a few check intervals: the writer's reads may use it again
        standby = app.state.database.replicas[0]
        with recorded(standby) as on_standby:
            again = await ask(client, replica, ONE, {"id": made[-1][0]}, subject="writer")
        assert again["data"]["patient"] is not None
        assert len(on_standby) == 1


async def test_a_standby_lagging_past_the_limit_is_out_of_rotation(
    settings: Settings, replica: ReplicaPair
) -> None:
    async with served(settings, replica, replica_max_lag_bytes=1024) as (app, client):
        routing = app.state.database.routing
        await until(lambda: routing.replicas[0].healthy)
        await replica.pause_replay()
        for n in range(5):  # WAL past the limit
            variables = {
                "input": {
                    "mrn": f"LAG-{n}-{uuid.uuid4().hex[:6]}",
                    "givenName": "L",
                    "familyName": "G",
                }
            }
            await ask(client, replica, CREATE_PATIENT, variables, subject="writer")
        await until(lambda: not routing.replicas[0].healthy)
        standby = app.state.database.replicas[0]
        with recorded(standby) as on_standby:
            body = await ask(client, replica, "{ patientStats { total } }", subject="other")
        assert body["data"]["patientStats"]["total"] > 0
        assert on_standby == []  # everyone reads from the primary meanwhile
        await replica.resume_replay()
        await until(lambda: routing.replicas[0].healthy)


async def test_a_standby_going_down_mid_load_fails_no_read_and_comes_back(
    settings: Settings, replica: ReplicaPair
) -> None:
    async with served(settings, replica) as (app, client):
        routing = app.state.database.routing
        await until(lambda: routing.replicas[0].healthy)
        query = "{ patients(first: 2) { edges { node { id mrn } } } }"

        async def load() -> list[dict[str, Any]]:
            return [await ask(client, replica, query, subject="other") for _ in range(10)]

        first = await load()
        await replica.stop_standby()
        during = await load() + await load()
        assert all(len(b["data"]["patients"]["edges"]) == 2 for b in first + during)
        assert not routing.replicas[0].healthy
        await replica.start_standby()
        await until(lambda: routing.replicas[0].healthy)
        standby = app.state.database.replicas[0]
        with recorded(standby) as on_standby:
            back = await ask(client, replica, query, subject="other")
        assert len(back["data"]["patients"]["edges"]) == 2
        assert len(on_standby) == 1


async def test_a_read_that_fails_on_the_standby_is_answered_by_the_primary(
    settings: Settings, replica: ReplicaPair
) -> None:
    """Before any check notices (checks an hour apart), the read that meets the dead standby
    is answered by the primary; the standby is out at once, so the next reads do not try it."""
    async with served(settings, replica, replica_check_seconds=3600) as (app, client):
        routing = app.state.database.routing
        assert routing.replicas[0].healthy  # the check at start
        registry = app.state.metrics.registry
        query = "{ patientStats { total } }"
        assert (await ask(client, replica, query))["data"]["patientStats"]["total"] > 0
        await replica.stop_standby()
        for _ in range(5):
            body = await ask(client, replica, query)
            assert body["data"]["patientStats"]["total"] > 0
        assert registry.get_sample_value("hms_db_replica_fallbacks_total") == 1
        assert not routing.replicas[0].healthy
        await replica.start_standby()
        await routing.check()
        assert routing.replicas[0].healthy


async def test_the_standby_shows_each_hospital_only_its_own_rows(
    settings: Settings, replica: ReplicaPair
) -> None:
    async with served(settings, replica) as (app, client):
        await until(lambda: app.state.database.routing.replicas[0].healthy)
        standby = app.state.database.replicas[0]
        shown: dict[str, set[uuid.UUID]] = {}
        for hospital in (replica.dataset.alpha, replica.dataset.beta):
            bearer = issue(SECRET, subject="rls", hospital_id=hospital.id, roles=["clinician"])
            with recorded(standby) as on_standby:
                response = await client.post(
                    "/graphql",
                    json={"query": "{ patients(first: 100) { edges { node { id } } } }"},
                    headers={"Authorization": f"Bearer {bearer}"},
                )
            assert len(on_standby) == 1
            edges = response.json()["data"]["patients"]["edges"]
            shown[hospital.slug] = {from_global_id(e["node"]["id"])[1] for e in edges}
        alpha, beta = shown[replica.dataset.alpha.slug], shown[replica.dataset.beta.slug]
        assert alpha
        assert beta
        assert not alpha & set(replica.dataset.beta.patients)
        assert not beta & set(replica.dataset.alpha.patients)
        assert not alpha & beta
