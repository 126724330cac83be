"""The composition root: ``create_app(settings)`` wires routes to long-lived clients.

The lifespan owns every side effect (engine pools, the cache client) and closes them on shutdown;
nothing is created at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hms.cache.backend import RedisCache, cache_from_url
from hms.context import Principal
from hms.http import graphiql, headers, reports
from hms.http.compression import Compression
from hms.http.graphql import GraphQLEndpoint
from hms.http.health import Lifecycle, healthz, metrics, readyz
from hms.limits.budget import MemoryBudgets, RedisBudgets
from hms.observability.metrics import Metrics
from hms.persistence import audit, hospitals
from hms.persistence.database import Database, side_engine
from hms.persistence.replicas import Replicas
from hms.pipeline import Pipeline
from hms.schema import schema
from hms.security.identity import Authenticator, Memberships, OidcAuthenticator, Tenants
from hms.security.membership_events import MembershipListener
from hms.security.oidc import KeySet, OidcConfig, OidcVerifier
from hms.security.tokens import issue
from hms.settings import Settings

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("hms")


async def _seal_every(database_url: str, seconds: float, *, pooled: bool) -> None:
    """Seal new audit events into their hospitals' chains, every ``seconds``, until cancelled.

    On a connection of its own, so it never takes one from the requests' pool.
    """
    engine = side_engine(database_url, "hms-sealer", pooled=pooled)
    try:
        while True:
            await asyncio.sleep(seconds)
            try:
                await audit.seal(engine)
            except Exception as error:  # the next round tries again; requests are unaffected
                log.warning("sealing audit events failed (%s)", type(error).__name__)
    finally:
        await engine.dispose()


async def _check_every(routing: Replicas, metrics: Metrics, seconds: float) -> None:
    """Check the replicas every ``seconds`` (each on a connection of its own) until cancelled."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await routing.check()
        except Exception as error:  # the next round tries again
            log.warning("checking replicas failed (%s)", type(error).__name__)
        metrics.replicas(routing)


def create_app(settings: Settings) -> Starlette:
    if settings.database_url is None or (
        settings.jwt_secret is None and settings.oidc_issuer is None
    ):
        raise ValueError("create_app needs resolved settings (database_url and jwt_secret)")
    secret = settings.jwt_secret
    pooled = settings.database_pooler != "none"  # no statement may outlive a transaction

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        database = Database.from_settings(settings)
        cache = cache_from_url(settings.redis_url)
        app.state.database = database
        app.state.cache = cache
        app.state.metrics = metrics = Metrics()
        app.state.demo_tokens = {}
        http: httpx.AsyncClient | None = None  # for an OIDC provider's keys only
        secret_tokens = False  # demo tokens only where the server accepts them
        authenticator: Callable[[str | None], Awaitable[Principal]]
        listener: MembershipListener | None = None
        if settings.oidc_issuer is not None and settings.oidc_audience is not None:
            config = OidcConfig(
                issuer=settings.oidc_issuer,
                audience=settings.oidc_audience,
                jwks_url=settings.oidc_jwks_url,
                algorithms=settings.oidc_algorithms,
                leeway=settings.oidc_leeway,
                cooldown=settings.oidc_jwks_cooldown,
            )
            import httpx  # here: ~0.07 s of every start, and only OIDC needs a client

            http = httpx.AsyncClient()
            app.state.keys = keys = KeySet(config, http)
            app.state.memberships = members = Memberships(database, ttl=settings.membership_ttl)
            assert settings.database_url is not None
            app.state.membership_listener = listener = MembershipListener(
                members,
                settings.database_listen_url or settings.database_url,
                pooled=pooled and settings.database_listen_url is None,
            )
            authenticator = OidcAuthenticator(
                OidcVerifier(config, keys), members, max_lifetime=settings.max_token_lifetime
            )
        else:
            assert secret is not None
            secret_tokens = True
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
        assert settings.database_url is not None
        app.state.audit_writer = writer = audit.Writer(settings.database_url, pooled=pooled)
        pipeline = Pipeline(
            schema=schema._schema,
            settings=settings,
            database=database,
            cache=cache,
            authenticator=authenticator,
            metrics=metrics,
            budgets=budgets,
            audit_writer=writer,
        )
        app.state.pipeline = pipeline
        app.state.endpoint = GraphQLEndpoint(pipeline, max_body_bytes=settings.max_body_bytes)
        if settings.is_dev and settings.graphiql and secret is not None and secret_tokens:
            # Demo tokens pre-fill GraphiQL; reading hospitals needs the owner's view (no tenant).
            try:
                rows = await hospitals.all_as_owner(database.primary)
                app.state.demo_tokens = {
                    row.slug: issue(secret, subject="demo", hospital_id=row.id, roles=["clinician"])
                    for row in rows
                }
            except Exception:
                log.warning("could not mint demo tokens for GraphiQL", exc_info=True)
        assert settings.database_url is not None
        sealer = asyncio.create_task(
            _seal_every(settings.database_url, settings.audit_seal_seconds, pooled=pooled)
        )
        # Started here, next to the sealer, so nothing can fail between its start and the
        # `finally` that stops it.
        following = None if listener is None else asyncio.create_task(listener.run())
        # Other workers' reference-cache invalidations (Redis pub/sub).
        invalidations = (
            None if pipeline.reference is None else asyncio.create_task(pipeline.reference.listen())
        )
        checking = None
        if database.routing is not None:
            routing = database.routing
            await routing.check()  # replicas enter rotation only once seen well
            checking = asyncio.create_task(
                _check_every(routing, metrics, settings.replica_check_seconds)
            )
        try:
            yield
        finally:
            for task in (sealer, following, checking, invalidations):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await writer.close()
            metrics.close()
            if http is not None:
                await http.aclose()
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
        Route("/reports/{report_id}.csv", reports.download, methods=["GET"]),
        *graphiql.routes(settings),
    ]
    # Compression innermost: the headers middlewares add to what it sends (CORS merges its Vary).
    middleware = headers.middleware(settings)
    if settings.compression:
        middleware = [*middleware, Middleware(Compression)]
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware)
    # Not in the lifespan: the signal that starts shutdown may come at any time while it serves.
    app.state.lifecycle = Lifecycle()
    return app
