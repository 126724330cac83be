"""GraphiQL in the browser at ``GET /graphql`` (Accept: text/html). Placeholder until assets land."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute

from hms.settings import Settings


def wants_page(request: Request, settings: Settings) -> bool:
    accept = request.headers.get("accept", "")
    return settings.graphiql and "text/html" in accept and "query" not in request.query_params


def page(request: Request, settings: Settings) -> Response:
    return HTMLResponse("<!doctype html><title>HMS GraphiQL</title><p>GraphiQL coming.</p>")


def routes() -> list[BaseRoute]:
    return []
