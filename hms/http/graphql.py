"""The ``/graphql`` endpoint: GraphQL over HTTP (POST and GET) per the GraphQL-over-HTTP spec.

Request flow: authenticate → read params (JSON body or query string) → parse+validate (cached)
→ execute against one request transaction → orjson. Request errors (unparseable body, invalid
document, bad variables) carry no ``data`` key; with ``application/graphql-response+json`` they
get a 4xx status, with legacy ``application/json`` a 200 (spec §"application/json").
"""

from __future__ import annotations

import hashlib
import logging
from inspect import isawaitable
from typing import Any

import orjson
from graphql import ExecutionResult, GraphQLError, GraphQLSchema, OperationType, execute
from starlette.requests import Request
from starlette.responses import Response

from hms.cache.backend import Cache
from hms.context import Context, Principal
from hms.http.documents import DocumentCache
from hms.http.responses import GRAPHQL_RESPONSE, JSON, error_response, json_response
from hms.loaders import Loaders
from hms.persistence import idempotency as idempotency_keys
from hms.persistence.database import Database
from hms.resolvers.errors import ClientError
from hms.security.tokens import AuthError, bearer, verify
from hms.settings import Settings

log = logging.getLogger("hms.http")

MAX_IDEMPOTENCY_KEY = 255


class RequestError(Exception):
    """The HTTP request cannot be turned into a GraphQL request."""

    def __init__(self, message: str, status: int = 400, code: str = "BAD_REQUEST") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.headers: dict[str, str] = {}


def negotiate(accept: str | None) -> str | None:
    """The response media type for an Accept header, or None when we can offer nothing."""
    if not accept:
        return JSON
    offered: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality <= 0:
            continue
        media = media.lower()
        if media == GRAPHQL_RESPONSE:
            offered.append((quality, -position, GRAPHQL_RESPONSE))
        elif media in (JSON, "application/*", "*/*"):
            offered.append((quality, -position, JSON))
    return max(offered)[2] if offered else None


def _mask(error: GraphQLError) -> dict[str, Any]:
    """Errors the client caused pass through; anything else is logged and masked."""
    original = error.original_error
    if original is None or isinstance(original, GraphQLError):
        formatted = dict(error.formatted)
        if isinstance(original, ClientError):
            formatted["extensions"] = original.extensions
        return formatted
    log.error("unexpected error at %s", error.path, exc_info=original)
    masked: dict[str, Any] = {
        "message": "Internal server error",
        "extensions": {"code": "INTERNAL_SERVER_ERROR"},
    }
    if error.locations is not None:
        masked["locations"] = [loc._asdict() for loc in error.locations]
    if error.path is not None:
        masked["path"] = error.path
    return masked


class GraphQLEndpoint:
    def __init__(
        self,
        *,
        schema: GraphQLSchema,
        settings: Settings,
        database: Database,
        cache: Cache,
        cursor_key: bytes,
        jwt_secret: str,
    ) -> None:
        self.schema = schema
        self.settings = settings
        self.database = database
        self.cache = cache
        self.cursor_key = cursor_key
        self.jwt_secret = jwt_secret
        self.documents = DocumentCache(
            schema,
            size=settings.document_cache_size,
            introspection=settings.introspection,
            max_tokens=settings.max_query_tokens,
        )

    async def __call__(self, request: Request) -> Response:
        media_type = negotiate(request.headers.get("accept"))
        if media_type is None:
            return error_response(
                f"Cannot answer with any type in Accept; offer {GRAPHQL_RESPONSE} or {JSON}",
                "NOT_ACCEPTABLE",
                status=406,
            )
        try:
            principal = verify(self.jwt_secret, bearer(request.headers.get("authorization")))
        except AuthError as error:
            return error_response(
                str(error),
                "UNAUTHENTICATED",
                status=401,
                media_type=media_type,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        try:
            params = await self._params(request)
            return await self._run(request, principal, params, media_type)
        except RequestError as error:
            return error_response(
                str(error),
                error.code,
                status=error.status,
                media_type=media_type,
                headers=error.headers,
            )

    async def _params(self, request: Request) -> dict[str, Any]:
        if request.method == "GET":
            params: dict[str, Any] = dict(request.query_params)
            for name in ("variables", "extensions"):
                if params.get(name):
                    try:
                        params[name] = orjson.loads(params[name])
                    except orjson.JSONDecodeError:
                        raise RequestError(f"'{name}' must be a JSON object") from None
            return params
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != JSON:
            raise RequestError(
                f"POST bodies must be {JSON}, got {content_type or 'no Content-Type'}",
                status=415,
                code="UNSUPPORTED_MEDIA_TYPE",
            )
        body = await self._body(request)
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise RequestError("Request body is not valid JSON") from None
        if not isinstance(parsed, dict):
            raise RequestError("Request body must be a JSON object")
        return parsed

    async def _body(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        too_large = RequestError(
            f"Request body exceeds {limit} bytes", status=413, code="PAYLOAD_TOO_LARGE"
        )
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    async def _run(
        self, request: Request, principal: Principal, params: dict[str, Any], media_type: str
    ) -> Response:
        query = params.get("query")
        if not isinstance(query, str) or not query.strip():
            raise RequestError("Provide the GraphQL document as a non-empty 'query' string")
        variables = params.get("variables")
        if variables is not None and not isinstance(variables, dict):
            raise RequestError("'variables' must be a JSON object")
        # GraphQL-over-HTTP: "extensions", if set, must be a map (null counts as unset). Was
        # silently ignored; graphql-http audits 58B0-58B3 (MAY now, marked to become MUST) want 400.
        extensions = params.get("extensions")
        if extensions is not None and not isinstance(extensions, dict):
            raise RequestError("'extensions' must be a JSON object")
        operation_name = params.get("operationName")
        if operation_name is not None and not isinstance(operation_name, str):
            raise RequestError("'operationName' must be a string")

        strict = media_type == GRAPHQL_RESPONSE
        document = self.documents.get(query)
        operation = document.operation(operation_name)
        if document.ast is not None and operation is None:
            raise RequestError(
                "Provide 'operationName' naming one operation of the document"
                if operation_name is None
                else f"Unknown operation named {operation_name!r}"
            )
        # Checked before validation: GET must never run a mutation, valid or not.
        if (
            operation is not None
            and operation.operation is not OperationType.QUERY
            and request.method == "GET"
        ):
            error = RequestError(
                f"{operation.operation.value}s are not allowed over GET; use POST",
                status=405,
                code="METHOD_NOT_ALLOWED",
            )
            error.headers["Allow"] = "POST"
            raise error
        if document.errors or operation is None:
            code = "GRAPHQL_PARSE_FAILED" if document.ast is None else "GRAPHQL_VALIDATION_FAILED"
            body = {
                "errors": [
                    {**e.formatted, "extensions": {**(e.extensions or {}), "code": code}}
                    for e in document.errors
                ]
            }
            return json_response(body, status=400 if strict else 200, media_type=media_type)

        readonly = operation.operation is OperationType.QUERY
        idempotency = None if readonly else self._idempotency(request, principal, params)
        db = self.database.request(principal.hospital_id, readonly=readonly)
        context = Context(
            principal=principal,
            db=db,
            loaders=Loaders(db),
            settings=self.settings,
            cache=self.cache,
            cursor_key=self.cursor_key,
        )
        commit = False
        try:
            if idempotency is not None:
                key, fingerprint = idempotency
                claimed = await idempotency_keys.claim(
                    db, principal.subject, key, fingerprint, self.settings.idempotency_ttl
                )
                if claimed.outcome == "mismatch":
                    raise RequestError(
                        "This Idempotency-Key was already used for a different request; "
                        "use a new key for a new request",
                        status=422,
                        code="IDEMPOTENCY_KEY_REUSED",
                    )
                if claimed.outcome == "replay":
                    return Response(
                        claimed.response,
                        status_code=claimed.status,
                        media_type=claimed.media_type,
                        headers={"Idempotent-Replayed": "true"},
                    )
            outcome = execute(
                self.schema,
                document.ast,  # type: ignore[arg-type]  # no errors means it parsed
                context_value=context,
                variable_values=variables,
                operation_name=operation_name,
            )
            result: ExecutionResult = await outcome if isawaitable(outcome) else outcome
            status, body = self._result_body(result, media_type)
            payload = orjson.dumps(body)
            content_type = f"{media_type}; charset=utf-8"
            if idempotency is not None:
                await idempotency_keys.store(
                    db, principal.subject, idempotency[0], status, content_type, payload
                )
            # Each mutation field is atomic on its own (a savepoint per field), and the response
            # reports every field's outcome, so what the response says happened is committed.
            commit = not readonly
        finally:
            await db.close(commit=commit)
        return Response(payload, status_code=status, media_type=content_type)

    def _idempotency(
        self, request: Request, principal: Principal, params: dict[str, Any]
    ) -> tuple[str, bytes] | None:
        """The request's ``Idempotency-Key`` and a fingerprint of what it asks for."""
        key = request.headers.get("idempotency-key")
        if key is None:
            return None
        if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY or not key.isprintable() or not key.isascii():
            raise RequestError(
                f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters",
                code="BAD_IDEMPOTENCY_KEY",
            )
        wanted = {k: params.get(k) for k in ("query", "variables", "operationName")}
        fingerprint = hashlib.sha256(orjson.dumps(wanted, option=orjson.OPT_SORT_KEYS)).digest()
        return key, fingerprint

    def _result_body(self, result: ExecutionResult, media_type: str) -> tuple[int, dict[str, Any]]:
        errors = [_mask(e) for e in result.errors or ()]
        # Variable coercion failures come back with no data and no error paths: a request error.
        if result.data is None and errors and all(e.path is None for e in result.errors or ()):
            for error in errors:
                error.setdefault("extensions", {}).setdefault("code", "BAD_USER_INPUT")
            return (400 if media_type == GRAPHQL_RESPONSE else 200), {"errors": errors}
        body: dict[str, Any] = {"data": result.data}
        if errors:
            body["errors"] = errors
        return 200, body
