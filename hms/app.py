"""The composition root: ``create_app(settings)`` wires routes to long-lived clients.

The lifespan owns every side effect (engine pools, the cache client) and closes them on shutdown;
nothing is created at import time.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hms.cache.backend import RedisCache, cache_from_url
from hms.http import graphiql, headers
from hms.http.graphql import GraphQLEndpoint
from hms.http.health import healthz, metrics, readyz
from hms.limits.budget import MemoryBudgets, RedisBudgets
from hms.observability.metrics import Metrics
from hms.persistence import hospitals
from hms.persistence.database import Database
from hms.pipeline import Pipeline
from hms.schema import schema
from hms.security.identity import Authenticator, Tenants
from hms.security.tokens import issue
from hms.settings import Settings

log = logging.getLogger("hms")


def create_app(settings: Settings) -> Starlette:
    if settings.database_url is None or settings.jwt_secret is None:
        raise ValueError("create_app needs resolved settings (database_url and jwt_secret)")
    secret = settings.jwt_secret

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        database = Database.from_settings(settings)
        cache = cache_from_url(settings.redis_url)
        app.state.database = database
        app.state.cache = cache
        app.state.metrics = metrics = Metrics()
        app.state.demo_tokens = {}
        authenticator = Authenticator(
            secret, Tenants(database), max_lifetime=settings.max_token_lifetime
        )
        # Cost budgets live next to the cache: in Redis (one Lua script per step), or in this
        # process's memory when there is no Redis (one worker).
        budgets = (
            RedisBudgets(cache.client, prefix=cache.prefix)
            if isinstance(cache, RedisCache)
            else MemoryBudgets()
        )
        pipeline = Pipeline(
            schema=schema._schema,
            settings=settings,
            database=database,
            cache=cache,
            authenticator=authenticator,
            metrics=metrics,
            budgets=budgets,
        )
        app.state.pipeline = pipeline
        app.state.endpoint = GraphQLEndpoint(pipeline, max_body_bytes=settings.max_body_bytes)
        if settings.is_dev and settings.graphiql:
            # Demo tokens pre-fill GraphiQL; reading hospitals needs the owner's view (no tenant).
            try:
                rows = await hospitals.all_as_owner(database.primary)
                app.state.demo_tokens = {
                    row.slug: issue(secret, subject="demo", hospital_id=row.id, roles=["clinician"])
                    for row in rows
                }
            except Exception:
                log.warning("could not mint demo tokens for GraphiQL", exc_info=True)
        try:
            yield
        finally:
            await cache.close()
            await database.dispose()

    async def graphql(request: Request) -> Response:
        if request.method == "GET" and graphiql.wants_page(request, settings):
            return graphiql.page(request, settings)
        endpoint: GraphQLEndpoint = request.app.state.endpoint
        return await endpoint(request)

    routes = [
        Route("/graphql", graphql, methods=["GET", "POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        *graphiql.routes(settings),
    ]
    return Starlette(routes=routes, lifespan=lifespan, middleware=headers.middleware(settings))
