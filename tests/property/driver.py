"""Drive the real ASGI app from synchronous code, such as hypothesis' stateful rules.

Hypothesis calls rules synchronously, while the app, its lifespan, the HTTP client and the
owner's asyncpg connection are all bound to the event loop that created them. :func:`driver`
makes one private loop, opens everything on it and closes it all again; each call goes through
``loop.run_until_complete``. The session loop of pytest-asyncio is not running while a sync test
runs, so the two never meet.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import asyncpg
import httpx
from starlette.applications import Starlette

from hms.app import create_app
from hms.settings import Settings

T = TypeVar("T")


class Driver:
    """The app over HTTP and the database as its owner (around row-level security)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        client: httpx.AsyncClient,
        owner: Any,
        app: Starlette,
    ) -> None:
        self.loop = loop
        self.client = client
        self.owner = owner  # asyncpg.Connection (untyped)
        self.app = app

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def graphql(self, token: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """POST a document as the token's principal; the ``data`` of a response without errors."""
        response = self.run(
            self.client.post(
                "/graphql",
                json={"query": query, "variables": variables},
                headers={"Authorization": f"Bearer {token}"},
            )
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert "errors" not in body, body
        data: dict[str, Any] = body["data"]
        return data

    def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = self.run(self.owner.fetch(sql, *args))
        return rows

    def execute(self, sql: str, *args: Any) -> None:
        self.run(self.owner.execute(sql, *args))


@contextlib.contextmanager
def driver(settings: Settings, database_url: str) -> Iterator[Driver]:
    """The app (lifespan entered), an httpx client and an owner connection on a private loop."""
    loop = asyncio.new_event_loop()
    stack = contextlib.AsyncExitStack()

    async def open_() -> Driver:
        app = create_app(settings)
        await stack.enter_async_context(app.router.lifespan_context(app))
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hms.test")
        )
        owner = await asyncpg.connect(database_url)
        stack.push_async_callback(owner.close)
        return Driver(loop, client, owner, app)

    try:
        yield loop.run_until_complete(open_())
    finally:
        try:
            loop.run_until_complete(stack.aclose())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()
