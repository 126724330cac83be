"""``/readyz`` while the process drains: 503 at once, and ``/healthz`` unaffected."""

from __future__ import annotations

import httpx

from hms.app import create_app
from hms.settings import Settings
from tests import fixtures


async def test_readyz_answers_draining_once_shutdown_starts(
    settings: Settings, dataset: fixtures.Dataset
) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hms.test") as client:
            before = await client.get("/readyz")
            app.state.lifecycle.drain()  # what hms serve's signal handler does first
            ready = await client.get("/readyz")
            health = await client.get("/healthz")
    assert (before.status_code, before.json()["status"]) == (200, "ready")
    assert ready.status_code == 503
    assert ready.json() == {"status": "draining"}  # no dependency was asked
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
