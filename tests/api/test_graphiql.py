"""GraphiQL at GET /graphql: served from our own files, under a strict CSP, tokens only in dev.

These drive the ASGI app without its lifespan (the page needs no database) and set
``app.state.demo_tokens`` the way the lifespan would; only the test that reaches the GraphQL
endpoint runs the lifespan.
"""

from __future__ import annotations

import hashlib
import json
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from hms.app import create_app
from hms.http import graphiql
from hms.settings import Settings

DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
SECRET = "test-secret-not-for-production-0123456789"
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.demo.signature"
VENDOR = graphiql.STATIC_DIR / "vendor"
JS_TYPES = {"text/javascript", "application/javascript"}  # Python 3.12 guesses the former

DEV = Settings(database_url=DATABASE_URL, jwt_secret=SECRET, graphiql=True)
PROD = Settings(env="prod", database_url=DATABASE_URL, jwt_secret=SECRET, graphiql=True)


class Page(HTMLParser):
    """The page as a browser tokenises it: every start tag, and the text of inline scripts."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline_scripts: list[tuple[dict[str, str | None], str]] = []
        self._open: dict[str, str | None] | None = None
        self._text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "script" and "src" not in attributes:
            self._open, self._text = attributes, []

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._open is not None:
            self.inline_scripts.append((self._open, "".join(self._text)))
            self._open = None

    def urls(self) -> list[str]:
        """Every script and stylesheet URL, in document order."""
        return [
            str(attrs.get("src") or attrs.get("href"))
            for tag, attrs in self.tags
            if (tag == "script" and "src" in attrs)
            or (tag == "link" and attrs.get("rel") == "stylesheet")
        ]

    def config(self) -> dict[str, Any]:
        (attrs, text), *others = self.inline_scripts
        assert others == [], "the config block must be the only inline script"
        assert attrs == {"type": "application/json", "id": graphiql.CONFIG_ID}
        config: dict[str, Any] = json.loads(text)
        return config


def client_for(settings: Settings, demo_tokens: dict[str, str] | None = None) -> httpx.AsyncClient:
    app = create_app(settings)
    if demo_tokens is not None:
        app.state.demo_tokens = demo_tokens
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hms.test")


async def get_page(settings: Settings, demo_tokens: dict[str, str] | None = None) -> httpx.Response:
    async with client_for(settings, demo_tokens) as client:
        response = await client.get("/graphql", headers={"Accept": BROWSER_ACCEPT})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    return response


async def test_page_is_served_under_a_strict_csp() -> None:
    response = await get_page(DEV, {"demo": TOKEN})
    nonce = Page(response.text).config()["styleNonce"]
    assert response.headers["content-security-policy"] == (
        "default-src 'none'; script-src 'self'; "
        f"style-src 'self' 'nonce-{nonce}'; "
        "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["vary"] == "Accept, Accept-Encoding"  # JSON or page; compressed


async def test_style_nonce_is_fresh_for_every_page() -> None:
    first, second = await get_page(DEV), await get_page(DEV)
    nonces = {Page(r.text).config()["styleNonce"] for r in (first, second)}
    assert len(nonces) == 2
    assert all(len(nonce) >= 16 for nonce in nonces)


async def test_page_has_no_inline_script_or_style() -> None:
    page = Page((await get_page(DEV, {"demo": TOKEN})).text)
    page.config()  # the one inline script is the inert JSON block
    assert not [tag for tag, attrs in page.tags if tag == "style" or "style" in attrs]


async def test_every_asset_is_local_and_served_with_its_type() -> None:
    page = Page((await get_page(DEV)).text)
    urls = page.urls()
    assert urls == [
        *(f"/graphiql/static/{path}" for path in graphiql.STYLES),
        *(f"/graphiql/static/{path}" for path in graphiql.SCRIPTS),
    ]
    assert not [url for url in urls if "http" in url or url.startswith("//")]
    icons = [attrs["href"] for tag, attrs in page.tags if tag == "link" and attrs["rel"] == "icon"]
    assert icons == ["data:,"]  # keeps the browser from fetching /favicon.ico
    async with client_for(DEV) as client:
        for url in urls:
            response = await client.get(url)
            assert response.status_code == 200, url
            media_type = response.headers["content-type"].split(";")[0]
            expected = {"text/css"} if url.endswith(".css") else JS_TYPES
            assert media_type in expected, (url, media_type)
            assert response.headers["x-content-type-options"] == "nosniff"
            vendored = url.startswith("/graphiql/static/vendor/")
            cache = "public, max-age=31536000, immutable" if vendored else "no-cache"
            assert response.headers["cache-control"] == cache, url


async def test_dev_prefills_the_first_demo_token() -> None:
    page = Page((await get_page(DEV, {"zeta": "zeta-token", "demo": TOKEN})).text)
    config = page.config()
    assert config["headers"] == {"Authorization": f"Bearer {TOKEN}"}
    assert config["hospital"] == "demo"
    assert config["url"] == "/graphql"


async def test_prod_never_puts_a_token_in_the_page() -> None:
    response = await get_page(PROD, {"demo": TOKEN})
    assert TOKEN not in response.text
    config = Page(response.text).config()
    assert config["headers"] == {}
    assert config["hospital"] is None


@pytest.mark.parametrize("demo_tokens", [None, {}], ids=["missing", "empty"])
async def test_page_works_without_demo_tokens(demo_tokens: dict[str, str] | None) -> None:
    config = Page((await get_page(DEV, demo_tokens)).text).config()
    assert config["headers"] == {}
    assert config["hospital"] is None


async def test_config_block_cannot_be_broken_out_of() -> None:
    slug = "</script><script>alert(1)</script>"
    token = "tok</SCRIPT><!--<script>&amp;"
    response = await get_page(DEV, {slug: token})
    assert "</script><script>alert(1)" not in response.text
    assert "</SCRIPT>" not in response.text
    page = Page(response.text)
    config = page.config()  # still one inline script, still valid JSON
    assert config["hospital"] == slug
    assert config["headers"] == {"Authorization": f"Bearer {token}"}
    assert page.urls()[-1] == "/graphiql/static/graphiql.js"


async def test_disabled_graphiql_serves_no_page() -> None:
    settings = DEV.with_(graphiql=False)
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://hms.test") as client,
    ):
        response = await client.get("/graphql", headers={"Accept": BROWSER_ACCEPT})
    assert not response.headers["content-type"].startswith("text/html")
    assert "script-src" not in response.headers["content-security-policy"]  # not the page's
    assert "graphiql" not in response.text.lower()


def request(accept: str, query_string: bytes = b"") -> Request:
    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/graphql",
            "query_string": query_string,
            "headers": [(b"accept", accept.encode())],
        }
    )


@pytest.mark.parametrize(
    ("accept", "query_string", "settings", "expected"),
    [
        (BROWSER_ACCEPT, b"", DEV, True),
        (BROWSER_ACCEPT, b"", PROD, True),  # prod with HMS_GRAPHIQL=true: page, but no token
        (BROWSER_ACCEPT, b"", DEV.with_(graphiql=False), False),
        (BROWSER_ACCEPT, b"query=%7B__typename%7D", DEV, False),  # a browser running a query
        ("application/json", b"", DEV, False),
        ("application/graphql-response+json", b"", DEV, False),
    ],
)
def test_wants_page(accept: str, query_string: bytes, settings: Settings, expected: bool) -> None:
    assert graphiql.wants_page(request(accept, query_string), settings) is expected


def test_vendored_files_match_sha256sums() -> None:
    """Vendored files change only through scripts/vendor-graphiql.sh, never by hand."""
    listed: dict[str, str] = {}
    for line in (VENDOR / "SHA256SUMS").read_text().splitlines():
        digest, path = line.split("  ", 1)
        listed[path] = digest
    on_disk = {
        path.relative_to(VENDOR).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in VENDOR.rglob("*")
        if path.is_file() and path.name != "SHA256SUMS"
    }
    assert on_disk == listed
    vendored = [
        path.removeprefix("vendor/")
        for path in (*graphiql.SCRIPTS, *graphiql.STYLES)
        if path.startswith("vendor/")
    ]
    assert len(vendored) == 6
    assert set(vendored) <= set(listed)
    for path in vendored:  # vendor/<npm name>@<version>/..., npm names may have a scope
        parts = path.split("/")
        package = "/".join(parts[: 2 if parts[0].startswith("@") else 1])
        assert f"{package}/LICENSE" in listed, package


def test_graphiql_bundle_has_what_graphiql_js_relies_on() -> None:
    """A GraphiQL upgrade that drops one of these breaks graphiql.js or the CSP nonce silently."""
    bundle = (VENDOR / "graphiql@4.1.2/graphiql.min.js").read_text()
    own = (graphiql.STATIC_DIR / "graphiql.js").read_text()
    relied_on = ("shouldPersistHeaders", "createLocalStorage", "createFetcher", "__webpack_nonce__")
    for name in relied_on:
        assert name in bundle, name
        assert name in own, name


async def test_static_assets_are_not_served_when_graphiql_is_off() -> None:
    app = create_app(
        Settings(
            database_url="postgresql://postgres@127.0.0.1:5432/postgres",
            jwt_secret="s" * 32,
            env="prod",
            graphiql=False,
        )
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hms.test") as client:
        response = await client.get("/graphiql/static/graphiql.js")
    assert response.status_code == 404
