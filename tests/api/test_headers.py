"""Security headers on every response, and CORS for the listed origins only (issue 10)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette

from hms.app import create_app
from hms.settings import Settings
from tests import fixtures
from tests.conftest import token

FRONT_END = "https://frontdesk.example.org"


@pytest.fixture
async def cors_app(settings: Settings) -> AsyncIterator[Starlette]:
    app = create_app(settings.with_(env="prod", cors_origins=(FRONT_END,), graphiql=False))
    async with app.router.lifespan_context(app):
        yield app


def http(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hms.test")


def assert_secured(response: httpx.Response, *, hsts: bool) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert ("strict-transport-security" in response.headers) == hsts


async def test_every_kind_of_response_carries_the_security_headers(
    cors_app: Starlette, dataset: fixtures.Dataset
) -> None:
    auth = {"Authorization": f"Bearer {token(dataset.alpha)}"}
    async with http(cors_app) as client:
        answers = [
            await client.post("/graphql", json={"query": "{ viewer { userId } }"}, headers=auth),
            await client.post("/graphql", json={"query": "{ viewer { userId } }"}),  # 401
            await client.post("/graphql", json={"query": "{ nope }"}, headers=auth),  # 400
            await client.post("/graphql", content=b"[1", headers=auth),  # malformed
            await client.get("/healthz"),
            await client.get("/metrics"),
            await client.get("/nowhere"),  # 404
        ]
    assert [a.status_code for a in answers][:2] == [200, 401]
    for answer in answers:
        assert_secured(answer, hsts=True)  # production


async def test_development_sends_no_hsts_and_graphiql_keeps_its_own_csp(
    app: Starlette,
) -> None:
    async with http(app) as client:
        page = await client.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert "script-src" in page.headers["content-security-policy"]  # the page's own policy
    assert page.headers["x-frame-options"] == "DENY"
    assert "strict-transport-security" not in page.headers


async def test_a_listed_origin_gets_cors_and_an_unlisted_one_does_not(
    cors_app: Starlette, dataset: fixtures.Dataset
) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
    }
    async with http(cors_app) as client:
        allowed = await client.options("/graphql", headers={"Origin": FRONT_END, **preflight})
        refused = await client.options(
            "/graphql", headers={"Origin": "https://evil.example.net", **preflight}
        )
        call = await client.post(
            "/graphql",
            json={"query": "{ viewer { userId } }"},
            headers={"Origin": FRONT_END, "Authorization": f"Bearer {token(dataset.alpha)}"},
        )
        foreign = await client.post(
            "/graphql",
            json={"query": "{ viewer { userId } }"},
            headers={
                "Origin": "https://evil.example.net",
                "Authorization": f"Bearer {token(dataset.alpha)}",
            },
        )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == FRONT_END
    assert "idempotency-key" in allowed.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in allowed.headers  # bearer tokens, no cookies
    assert_secured(allowed, hsts=True)
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    assert call.headers["access-control-allow-origin"] == FRONT_END
    assert "ratelimit-remaining" in call.headers["access-control-expose-headers"].lower()
    assert "access-control-allow-origin" not in foreign.headers


async def test_without_listed_origins_no_response_allows_any(
    settings: Settings, dataset: fixtures.Dataset
) -> None:
    app = create_app(settings.with_(cors_origins=()))
    async with app.router.lifespan_context(app), http(app) as client:
        preflight = await client.options(
            "/graphql",
            headers={"Origin": FRONT_END, "Access-Control-Request-Method": "POST"},
        )
    assert "access-control-allow-origin" not in preflight.headers


async def test_a_batch_of_operations_in_one_request_is_refused(
    client: httpx.AsyncClient, dataset: fixtures.Dataset
) -> None:
    """One operation per HTTP request: a JSON array (Apollo's batching) is a request error, so
    one request cannot multiply its cost past the limits."""
    response = await client.post(
        "/graphql",
        json=[{"query": "{ viewer { userId } }"}, {"query": "{ viewer { roles } }"}],
        headers={"Authorization": f"Bearer {token(dataset.alpha)}"},
    )
    assert response.status_code == 400
    body = response.json()
    assert "data" not in body
    assert "JSON object" in body["errors"][0]["message"]
