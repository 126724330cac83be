"""GraphiQL in the browser at ``GET /graphql`` (``Accept: text/html``, no ``query`` parameter).

Contract: with ``settings.graphiql`` on, a browser's GET of /graphql gets a page that loads only
files from ``hms/http/static`` (mounted at ``/graphiql/static``): the pinned GraphiQL, explorer
plugin and React builds that ``scripts/vendor-graphiql.sh`` vendors, and our ``graphiql.js``. No
CDN, so the page works offline and under a CSP that allows nothing but this origin: no inline
script, and no inline style but the one nonced element GraphiQL injects. Options reach
``graphiql.js`` in a non-executable JSON block, escaped so that no value can close the
``<script>`` element. In dev the Authorization header is pre-filled with a demo token
(``app.state.demo_tokens``); in prod no token is ever written into the page. The page is
``no-store`` and ``graphiql.js`` keeps headers out of the browser's storage.
"""

from __future__ import annotations

import html
import json
import secrets
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from hms.settings import Settings

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PATH = "/graphiql/static"

# In load order: React before GraphiQL (its UMD build reads window.React), GraphiQL before the
# plugin (which reads window.GraphiQL), our init script last.
SCRIPTS = (
    "vendor/react@18.3.1/umd/react.production.min.js",
    "vendor/react-dom@18.3.1/umd/react-dom.production.min.js",
    "vendor/graphiql@4.1.2/graphiql.min.js",
    "vendor/@graphiql/plugin-explorer@4.0.6/dist/index.umd.js",
    "graphiql.js",
)
STYLES = (
    "vendor/graphiql@4.1.2/graphiql.min.css",
    "vendor/@graphiql/plugin-explorer@4.0.6/dist/style.css",
    "graphiql.css",
)


def content_security_policy(style_nonce: str) -> str:
    """This origin only: no inline script, no eval, no inline style but one nonced element."""
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            # GraphiQL's dialogs (Radix, via react-remove-scroll) append one <style> element to
            # lock scrolling. That code sets the element's nonce from window.__webpack_nonce__,
            # which graphiql.js fills from the config, so a per-response nonce admits exactly
            # that element where 'unsafe-inline' would admit any.
            f"style-src 'self' 'nonce-{style_nonce}'",
            "img-src 'self' data:",
            "font-src 'self' data:",  # graphiql.min.css inlines its fonts as data: URLs
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )


PAGE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Vary": "Accept",  # the same URL answers JSON to API clients
}
CONFIG_ID = "hms-graphiql-config"


def wants_page(request: Request, settings: Settings) -> bool:
    accept = request.headers.get("accept", "")
    return settings.graphiql and "text/html" in accept and "query" not in request.query_params


def page(request: Request, settings: Settings) -> Response:
    root = request.scope.get("root_path", "")
    hospital, headers = _demo_headers(request, settings)
    style_nonce = secrets.token_urlsafe(16)
    config = {
        "url": f"{root}/graphql",
        "headers": headers,
        "hospital": hospital,
        "styleNonce": style_nonce,
    }

    def asset(path: str) -> str:
        return html.escape(f"{root}{STATIC_PATH}/{path}")

    styles = "".join(f'<link rel="stylesheet" href="{asset(path)}">\n' for path in STYLES)
    scripts = "".join(f'<script src="{asset(path)}"></script>\n' for path in SCRIPTS)
    body = (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        # No favicon request (the browser would otherwise ask for /favicon.ico and log a 404).
        '<link rel="icon" href="data:,">\n'
        f"<title>HMS GraphiQL</title>\n{styles}</head>\n<body>\n"
        '<div id="graphiql">Loading GraphiQL…</div>\n'
        f'<script type="application/json" id="{CONFIG_ID}">{script_json(config)}</script>\n'
        f"{scripts}</body>\n</html>\n"
    )
    csp = content_security_policy(style_nonce)
    return HTMLResponse(body, headers={**PAGE_HEADERS, "Content-Security-Policy": csp})


def script_json(value: object) -> str:
    """JSON that is inert inside ``<script>``: no ``<``, ``>`` or ``&`` survive unescaped."""
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _demo_headers(request: Request, settings: Settings) -> tuple[str | None, dict[str, str]]:
    """The first demo hospital (by slug) and headers carrying its token; nothing outside dev."""
    if not settings.is_dev:
        return None, {}
    tokens: dict[str, str] = getattr(request.app.state, "demo_tokens", None) or {}
    if not tokens:
        return None, {}
    slug = min(tokens)
    return slug, {"Authorization": f"Bearer {tokens[slug]}"}


class _StaticFiles(StaticFiles):
    """Vendored files are versioned by their path, so cache them for good; ours revalidate."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        vendored = Path(path).parts[:1] == ("vendor",)
        response.headers["Cache-Control"] = (
            "public, max-age=31536000, immutable" if vendored else "no-cache"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def routes(settings: Settings) -> list[BaseRoute]:
    """The static assets, mounted only when GraphiQL is on."""
    if not settings.graphiql:
        return []
    return [Mount(STATIC_PATH, _StaticFiles(directory=STATIC_DIR), name="graphiql-static")]
