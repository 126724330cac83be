"""Membership changes reach running workers by notification, not by expiry (issue 10).

The workers here trust a membership for an hour; a change made on another connection (as
``hms members`` makes it) must still be seen by the next request, within moments. Waits poll
the state they wait for, with a bound, instead of sleeping a guessed time.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from starlette.applications import Starlette

from hms.app import create_app
from hms.persistence import memberships, migrate
from hms.persistence.database import Database, RequestDb
from hms.persistence.urls import async_url
from hms.security.identity import Memberships
from hms.security.membership_events import APPLICATION_NAME, CHANNEL, MembershipListener
from hms.settings import Settings
from tests import fixtures
from tests.integration import test_oidc
from tests.integration.test_oidc import AUDIENCE, Provider, ask, refused

# The OIDC tests' fixtures (a provider on loopback, a hospital, a member of it), by their names.
provider = test_oidc.provider
ward = test_oidc.ward
member = test_oidc.member

HOUR = 3600.0
WARNING = (
    r"membership notifications interrupted \((?P<error>\w+)\): cached memberships forgotten,"
    r" reconnecting in (?P<delay>[\d.]+) s"
)


async def until(condition: Callable[[], bool], *, within: float = 5.0) -> None:
    """Return as soon as ``condition()`` holds; fail if it does not within ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        await asyncio.sleep(0.01)


def cached(members: Memberships, hospital: fixtures.HospitalData, subject: str) -> bool:
    return (hospital.id, subject) in list(members._known)


@pytest.fixture
async def hour_app(settings: Settings, provider: Provider) -> AsyncIterator[Starlette]:
    """An OIDC app that would trust a membership for an hour, once it is listening."""
    app = create_app(
        settings.with_(oidc_issuer=provider.issuer, oidc_audience=AUDIENCE, membership_ttl=HOUR)
    )
    async with app.router.lifespan_context(app):
        await until(lambda: app.state.membership_listener.listening)
        yield app


@pytest.fixture
async def owner(database_url: str) -> AsyncIterator[AsyncEngine]:
    """The owner's connection, as ``hms members`` uses it: another connection than the app's."""
    engine = create_async_engine(async_url(database_url))
    yield engine
    await engine.dispose()


async def roles(
    app: Starlette, idp: Provider, hospital: fixtures.HospitalData, subject: str
) -> list[str]:
    response = await ask(app, idp.token(hospital, subject))
    assert response.status_code == 200, response.text
    held: list[str] = response.json()["data"]["viewer"]["roles"]
    return held


async def test_a_change_is_seen_by_the_next_request_not_after_the_ttl(
    hour_app: Starlette,
    provider: Provider,
    ward: fixtures.HospitalData,
    member: str,
    owner: AsyncEngine,
) -> None:
    members: Memberships = hour_app.state.memberships
    assert await roles(hour_app, provider, ward, member) == ["clinician", "front_desk"]
    assert cached(members, ward, member)
    await memberships.put_as_owner(owner, ward.id, member, ["auditor"])
    await until(lambda: not cached(members, ward, member))
    assert await roles(hour_app, provider, ward, member) == ["auditor"]
    assert cached(members, ward, member)
    await memberships.remove_as_owner(owner, ward.id, member)
    await until(lambda: not cached(members, ward, member))
    refused(await ask(hour_app, provider.token(ward, member)), 403, "not a member")


async def test_a_lost_listener_forgets_everything_and_listens_again(
    hour_app: Starlette,
    provider: Provider,
    ward: fixtures.HospitalData,
    member: str,
    owner: AsyncEngine,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    members: Memberships = hour_app.state.memberships
    listener: MembershipListener = hour_app.state.membership_listener
    assert await roles(hour_app, provider, ward, member) == ["clinician", "front_desk"]
    assert cached(members, ward, member)
    sessions = listener.sessions
    conn = await asyncpg.connect(database_url)
    try:
        (pid,) = [
            row["pid"]
            for row in await conn.fetch(
                "SELECT pid FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = $1",
                APPLICATION_NAME,
            )
        ]
        with caplog.at_level(logging.INFO, logger="hms"):
            assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
            # Nothing about this member changed, but the worker cannot know what it missed.
            await until(lambda: len(members._known) == 0)
            await until(lambda: listener.listening and listener.sessions == sessions + 1)
        (lost,) = [r for r in caplog.records if "interrupted" in r.getMessage()]
        assert lost.levelno == logging.WARNING
        assert member not in lost.getMessage()
        assert any("resumed" in r.getMessage() for r in caplog.records)
        new_pid = await conn.fetchval(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = $1",
            APPLICATION_NAME,
        )
        assert new_pid not in (None, pid)
    finally:
        await conn.close()
    # Listening again: the next change is seen at once, as before.
    assert await roles(hour_app, provider, ward, member) == ["clinician", "front_desk"]
    await memberships.put_as_owner(owner, ward.id, member, ["auditor"])
    await until(lambda: not cached(members, ward, member))
    assert await roles(hour_app, provider, ward, member) == ["auditor"]


async def test_a_change_announced_during_a_lookup_is_not_kept_stale(
    hour_app: Starlette,
    ward: fixtures.HospitalData,
    member: str,
    owner: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The lookup reads the old roles; the change commits and is announced before it stores
    them. It answers with what it read, but the next lookup asks the database again."""
    members: Memberships = hour_app.state.memberships
    listener: MembershipListener = hour_app.state.membership_listener
    read = memberships.roles_of

    async def read_then_change(db: RequestDb, subject: str) -> frozenset[str] | None:
        held = await read(db, subject)
        heard = listener.received
        await memberships.put_as_owner(owner, ward.id, subject, ["auditor"])
        await until(lambda: listener.received > heard)
        return held

    monkeypatch.setattr(memberships, "roles_of", read_then_change)
    assert await members.roles(ward.id, member) == frozenset({"clinician", "front_desk"})
    monkeypatch.undo()
    assert not cached(members, ward, member)
    assert await members.roles(ward.id, member) == frozenset({"auditor"})


async def test_a_payload_names_one_member_and_anything_else_means_everyone(
    settings: Settings,
) -> None:
    database = Database.from_settings(settings)
    members = Memberships(database, ttl=HOUR)
    listener = MembershipListener(members, settings.database_url or "")
    one, other = uuid.uuid4(), uuid.uuid4()
    try:
        for payload, kept in (
            (f"{one} a b", {(one, "a"), (other, "a b")}),  # a subject may hold a space
            ("*", set()),  # TRUNCATE
            (f"{one}", set()),  # not a payload of migration 0006: forget everything
            ("not-a-hospital a b", set()),
        ):
            for key in ((one, "a b"), (one, "a"), (other, "a b")):
                members._known.put(key, frozenset({"admin"}), HOUR)
            listener.deliver(payload)
            assert set(members._known) == kept, payload
    finally:
        await database.dispose()
    assert listener.received == 4


async def test_without_a_database_the_listener_forgets_backs_off_and_stops_cleanly(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    database = Database.from_settings(settings)
    members = Memberships(database, ttl=HOUR)
    members._known.put((uuid.uuid4(), "someone"), frozenset({"admin"}), HOUR)
    nowhere = "postgresql://postgres@127.0.0.1:1/nowhere"
    listener = MembershipListener(members, nowhere, first_delay=0.1, max_delay=0.4)
    try:
        with caplog.at_level(logging.WARNING, logger="hms"):
            task = asyncio.create_task(listener.run())
            await until(lambda: len(caplog.records) >= 4)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    finally:
        await database.dispose()
    assert len(members._known) == 0
    assert (listener.listening, listener.sessions) == (False, 0)
    said = [re.fullmatch(WARNING, r.getMessage()) for r in caplog.records]
    assert all(said), caplog.records
    # Doubling from the first delay up to the cap, then staying there: never a busy loop.
    assert [m.group("delay") for m in said if m][:4] == ["0.1", "0.2", "0.4", "0.4"]


async def test_the_trigger_announces_every_committed_change_and_downgrades(
    empty_database: Callable[[], Awaitable[str]],
) -> None:
    url = await empty_database()
    await asyncio.to_thread(migrate.upgrade, url)
    heard: asyncio.Queue[str] = asyncio.Queue()
    listening = await asyncpg.connect(url)
    writer = await asyncpg.connect(url)

    async def announced() -> list[str]:
        # A marker sent last: everything committed before it has arrived once it has.
        await writer.execute(f"NOTIFY {CHANNEL}, 'end'")
        payloads = []
        while (payload := await asyncio.wait_for(heard.get(), 5)) != "end":
            payloads.append(payload)
        return payloads

    try:
        await listening.add_listener(
            CHANNEL, lambda _c, _p, _ch, payload: heard.put_nowait(payload)
        )
        hospital = uuid.uuid4()
        await writer.execute(
            "INSERT INTO hospital (id, slug, name) VALUES ($1, 'h', 'H')", hospital
        )
        member_sql = (
            "INSERT INTO hospital_membership (hospital_id, subject, roles) VALUES ($1, $2, $3)"
        )
        await writer.execute(member_sql, hospital, "a b", ["admin"])
        assert await announced() == [f"{hospital} a b"]
        await writer.execute("UPDATE hospital_membership SET roles = '{auditor}'")
        assert await announced() == [f"{hospital} a b"]  # old and new are one: folded
        await writer.execute("UPDATE hospital_membership SET subject = 'c'")
        assert await announced() == [f"{hospital} a b", f"{hospital} c"]
        async with writer.transaction():
            await writer.execute(member_sql, hospital, "d", ["admin"])
            await writer.execute("DELETE FROM hospital_membership WHERE subject = 'c'")
        assert await announced() == [f"{hospital} d", f"{hospital} c"]
        rolled_back = writer.transaction()
        await rolled_back.start()
        await writer.execute(member_sql, hospital, "e", ["admin"])
        await rolled_back.rollback()
        assert await announced() == []  # nothing committed, nothing announced
        await writer.execute("TRUNCATE hospital_membership")
        assert await announced() == ["*"]
        await asyncio.to_thread(migrate.downgrade, url, "0005")
        await writer.execute(member_sql, hospital, "f", ["admin"])
        await writer.execute("TRUNCATE hospital_membership")
        assert await announced() == []
        await asyncio.to_thread(migrate.upgrade, url)
        await writer.execute(member_sql, hospital, "g", ["admin"])
        assert await announced() == [f"{hospital} g"]
    finally:
        await writer.close()
        await listening.close()
