"""``hms hospitals add``: how a production database gets its hospitals (no seed, no SQL)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import uuid

import asyncpg
import httpx
import pytest

from hms import cli
from hms.settings import Settings
from tests.conftest import SECRET


def hms(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def env(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HMS_DATABASE_URL", database_url)
    monkeypatch.setenv("HMS_JWT_SECRET", SECRET)


async def test_a_hospital_is_created_listed_and_served(
    env: None, settings: Settings, database_url: str
) -> None:
    slug = f"st-{uuid.uuid4().hex[:8]}"
    code, out, said = await asyncio.to_thread(
        hms, "hospitals", "add", "--slug", slug, "--name", "St Mary", "--timezone", "Europe/Berlin"
    )
    assert code == 0, said
    hospital_id = uuid.UUID(out.strip())
    code, out, _ = await asyncio.to_thread(hms, "hospitals", "list")
    assert f"{slug}\t{hospital_id}\tEurope/Berlin\tSt Mary" in out.splitlines()
    # Usable at once: a token for it is accepted (its hospital exists) and sees no one else's.
    from hms.app import create_app
    from hms.security.tokens import issue

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hms.test") as http:
            bearer = issue(SECRET, subject="admin", hospital_id=hospital_id, roles=["admin"])
            response = await http.post(
                "/graphql",
                json={"query": "{ viewer { hospital { slug timezone } } patients { totalCount } }"},
                headers={"Authorization": f"Bearer {bearer}"},
            )
    assert response.json().get("data") == {
        "viewer": {"hospital": {"slug": slug, "timezone": "Europe/Berlin"}},
        "patients": {"totalCount": 0},
    }


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--slug", "A b", "--name", "X"], "--slug must be"),
        (["--slug=-x", "--name", "X"], "--slug must be"),
        (["--slug", "ok-slug", "--name", " "], "--name must be"),
        (["--slug", "ok-slug", "--name", "X", "--timezone", "Mars/Olympus"], "IANA time zone"),
    ],
)
async def test_bad_input_is_refused_and_nothing_is_written(
    env: None, database_url: str, argv: list[str], words: str
) -> None:
    code, _, said = await asyncio.to_thread(hms, "hospitals", "add", *argv)
    assert code == 2
    assert words in said
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM hospital WHERE slug = 'ok-slug'") == 0
    finally:
        await conn.close()


async def test_a_taken_slug_is_refused(env: None, database_url: str) -> None:
    slug = f"dup-{uuid.uuid4().hex[:8]}"
    assert (await asyncio.to_thread(hms, "hospitals", "add", "--slug", slug, "--name", "A"))[0] == 0
    code, _, said = await asyncio.to_thread(hms, "hospitals", "add", "--slug", slug, "--name", "B")
    assert code == 1
    assert "exists already" in said
