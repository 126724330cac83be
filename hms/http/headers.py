"""What every HTTP response carries: security headers, and CORS for the listed origins only.

Every answer (API, health, metrics, errors, CORS preflights) says: do not sniff the type, do
not frame me, send no referrer, load nothing from me as a document; in production, HTTPS
only (HSTS). A response that set its own ``Content-Security-Policy`` (the GraphiQL page)
keeps it.

CORS: only origins in ``HMS_CORS_ORIGINS`` get ``Access-Control-Allow-Origin``. Credentials
(cookies) are never allowed: HMS authenticates by bearer token, so a page can call it only
with a token it was given. The headers clients send (``Authorization``, Apollo's client name,
``Idempotency-Key``, ``HMS-Dry-Run``, ``If-None-Match``) are allowed, and the ones they read
(the rate-limit headers, ``Retry-After``, ``ETag``, ``Idempotent-Replayed``) exposed.
"""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hms.settings import Settings

_ALWAYS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
_HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")

REQUEST_HEADERS = (
    "Authorization",
    "Content-Type",
    "Accept",
    "apollographql-client-name",
    "apollographql-client-version",
    "Idempotency-Key",
    "HMS-Dry-Run",
    "If-None-Match",
)
EXPOSED_HEADERS = (
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "Retry-After",
    "ETag",
    "Idempotent-Replayed",
)


class SecurityHeaders:
    """Adds the security headers to every HTTP response (pure ASGI: no per-request objects)."""

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.fixed = _ALWAYS + ((_HSTS,) if hsts else ())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers += [pair for pair in self.fixed if pair[0] not in present]
                if _CSP[0] not in present:
                    headers.append(_CSP)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def middleware(settings: Settings) -> list[Middleware]:
    """Outermost first: the security headers also go on CORS preflight answers."""
    stack = [Middleware(SecurityHeaders, hsts=not settings.is_dev)]
    if settings.cors_origins:
        stack.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=list(REQUEST_HEADERS),
                expose_headers=list(EXPOSED_HEADERS),
                allow_credentials=False,
                max_age=600,
            )
        )
    return stack
