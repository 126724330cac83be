"""``/healthz`` (the process answers; never touches a dependency) and ``/readyz`` (it can serve)."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from hms.http.responses import json_response

READY_TIMEOUT = 2.0


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    state = request.app.state
    checks: dict[str, str] = {}
    for name, probe in (("database", state.database.ping), ("cache", state.cache.ping)):
        try:
            await asyncio.wait_for(probe(), READY_TIMEOUT)
            checks[name] = "ok"
        except Exception as error:  # any failure means "not ready"; the reason is logged-safe
            checks[name] = f"unavailable: {type(error).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return json_response(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )
