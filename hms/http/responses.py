"""JSON responses written with orjson, and the GraphQL-over-HTTP media types."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"


def json_response(
    body: Any,
    *,
    status: int = 200,
    media_type: str = JSON,
    headers: dict[str, str] | None = None,
) -> Response:
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type=f"{media_type}; charset=utf-8",
        headers=headers,
    )


def error_response(
    message: str,
    code: str,
    *,
    status: int,
    media_type: str = JSON,
    headers: dict[str, str] | None = None,
) -> Response:
    """A request-level failure: ``errors`` only, never a ``data`` key."""
    body = {"errors": [{"message": message, "extensions": {"code": code}}]}
    return json_response(body, status=status, media_type=media_type, headers=headers)
