"""``/healthz`` (the process answers; never touches a dependency), ``/readyz`` (it can serve)
and ``/metrics``.

Readiness reports what makes this instance unable to serve: only PostgreSQL, which every
request needs. Redis has a fallback (nothing on the request path needs it yet), so a Redis
outage is reported as ``degraded`` in the body and in ``hms_dependency_up``, with 200: taking
every instance out of rotation because of the cache would turn a degraded service into an
outage.

A process that has begun to shut down answers ``/readyz`` with 503 ``draining`` without asking
any dependency, while ``/healthz`` still answers 200: it should get no new traffic, but it is
not broken and must not be restarted while it finishes its requests.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from hms.http.responses import json_response
from hms.observability.metrics import CONTENT_TYPE_LATEST

READY_TIMEOUT = 2.0
#: Dependency → whether the instance can serve without it.
REQUIRED = {"database": True, "cache": False}


class Lifecycle:
    """Whether this process is shutting down; ``drain()`` is safe to call from a signal handler.

    ``hms serve`` calls it as soon as SIGTERM or SIGINT arrives (``hms.cli``), before uvicorn stops
    accepting connections and long before the lifespan's shutdown, which runs only after the
    in-flight requests have finished.
    """

    __slots__ = ("draining",)

    def __init__(self) -> None:
        self.draining = False

    def drain(self) -> None:
        self.draining = True


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    state = request.app.state
    if state.lifecycle.draining:
        return json_response({"status": "draining"}, status=503)
    checks: dict[str, str] = {}
    for name, probe in (("database", state.database.ping), ("cache", state.cache.ping)):
        try:
            await asyncio.wait_for(probe(), READY_TIMEOUT)
            checks[name] = "ok"
        except Exception as error:  # any failure means "not available"; the class name is safe
            checks[name] = f"unavailable: {type(error).__name__}"
        state.metrics.dependency_up.labels(name).set(checks[name] == "ok")
    down = [name for name, result in checks.items() if result != "ok"]
    if any(REQUIRED[name] for name in down):
        status, code = "unavailable", 503
    elif down:
        status, code = "degraded", 200
    else:
        status, code = "ready", 200
    return json_response({"status": status, "checks": checks}, status=code)


async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
