"""The ``/graphql`` endpoint: GraphQL over HTTP (POST and GET), a thin translator.

This module reads the transport — ``Accept`` negotiation, the method, the JSON body or query
string, size and media-type limits, the ``Idempotency-Key`` header — into one
:class:`~hms.pipeline.GraphQLRequest`, hands it to the :class:`~hms.pipeline.Pipeline`, and
writes the :class:`~hms.pipeline.Reply` back. It also watches the connection: a client that goes
away has its request cancelled (and its transaction rolled back) instead of finishing work
nobody will receive. Request errors carry no ``data`` key; with
``application/graphql-response+json`` they get a 4xx status, with legacy ``application/json`` a
200 where the GraphQL-over-HTTP spec asks for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive

from hms.documents.persisted import BadDocumentId, PersistedRef, parse_id
from hms.http.responses import GRAPHQL_RESPONSE, JSON, error_response
from hms.observability.logs import log_failure
from hms.pipeline import Failure, GraphQLRequest, Pipeline, Reply, bad_request, failure_reply

log = logging.getLogger("hms.http")

MAX_IDEMPOTENCY_KEY = 255
#: Status logged for a request whose client left before the answer (nginx's convention).
CLIENT_CLOSED = 499


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


async def _until_disconnected(receive: Receive) -> None:
    """Return when the client has gone (the body was already read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class GraphQLEndpoint:
    def __init__(self, pipeline: Pipeline, *, max_body_bytes: int) -> None:
        self.pipeline = pipeline
        self.max_body_bytes = max_body_bytes

    async def __call__(self, request: Request) -> Response:
        media_type = negotiate(request.headers.get("accept"))
        if media_type is None:
            return error_response(
                f"Cannot answer with any type in Accept; offer {GRAPHQL_RESPONSE} or {JSON}",
                "NOT_ACCEPTABLE",
                status=406,
            )
        try:
            try:
                graphql_request = await self._read(request, media_type)
            except Failure as failure:
                failure.__traceback__ = None  # an answer; its frames would hold it in a cycle
                return _response(failure_reply(failure, media_type))
            reply = await self._run_while_connected(request, graphql_request)
            if request.method == "GET" and reply.status == 200:
                return _validated(request, reply)
        except Exception as error:  # the last line of defence: JSON, masked, PHI-free
            log_failure(log, "unexpected error in the GraphQL endpoint", error)
            reply = failure_reply(
                Failure("Internal server error", "INTERNAL_SERVER_ERROR", 500), media_type
            )
        return _response(reply)

    async def _run_while_connected(
        self, request: Request, graphql_request: GraphQLRequest
    ) -> Reply:
        work = asyncio.ensure_future(self.pipeline.run(graphql_request))
        watch = asyncio.ensure_future(_until_disconnected(request.receive))
        try:
            await asyncio.wait((work, watch), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not work.done():
                work.cancel()  # the client left, or this handler itself was cancelled
            watch.cancel()
        if work.cancelled() or not work.done():
            with contextlib.suppress(asyncio.CancelledError):
                await work  # let the pipeline roll back and release its connection
            return Reply(CLIENT_CLOSED, b"", "text/plain")
        return work.result()

    async def _read(self, request: Request, media_type: str) -> GraphQLRequest:
        if request.method == "GET":
            params: dict[str, Any] = dict(request.query_params)
            for name in ("variables", "extensions"):
                if params.get(name):
                    try:
                        params[name] = orjson.loads(params[name])
                    except orjson.JSONDecodeError:
                        raise bad_request(f"'{name}' must be a JSON object") from None
        else:
            content_type = request.headers.get("content-type", "")
            if content_type.split(";")[0].strip().lower() != JSON:
                raise bad_request(
                    f"POST bodies must be {JSON}, got {content_type or 'no Content-Type'}",
                    code="UNSUPPORTED_MEDIA_TYPE",
                    status=415,
                )
            body = await self._body(request)
            try:
                params = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise bad_request("Request body is not valid JSON") from None
            if not isinstance(params, dict):
                raise bad_request("Request body must be a JSON object")
        persisted = _persisted(params)
        query = params.get("query")
        if query is not None and (not isinstance(query, str) or not query.strip()):
            raise bad_request("Provide the GraphQL document as a non-empty 'query' string")

        variables = params.get("variables")
        if variables is not None and not isinstance(variables, dict):
            raise bad_request("'variables' must be a JSON object")
        # GraphQL-over-HTTP: "extensions", if set, must be a map (null counts as unset);
        # graphql-http audits 58B0-58B3 want 400.
        extensions = params.get("extensions")
        if extensions is not None and not isinstance(extensions, dict):
            raise bad_request("'extensions' must be a JSON object")
        operation_name = params.get("operationName")
        if operation_name is not None and not isinstance(operation_name, str):
            raise bad_request("'operationName' must be a string")
        return GraphQLRequest(
            query=query,
            variables=variables,
            operation_name=operation_name,
            method=request.method,
            media_type=media_type,
            authorization=request.headers.get("authorization"),
            idempotency_key=self._idempotency_key(request),
            persisted=persisted,
            client_name=request.headers.get("apollographql-client-name"),
            dry_run=self._dry_run(request),
            traceparent=request.headers.get("traceparent"),
        )

    async def _body(self, request: Request) -> bytes:
        limit = self.max_body_bytes
        too_large = bad_request(
            f"Request body exceeds {limit} bytes", code="PAYLOAD_TOO_LARGE", status=413
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

    @staticmethod
    def _dry_run(request: Request) -> bool:
        value = request.headers.get("hms-dry-run")
        if value is None:
            return False
        if value.strip().lower() != "cost":
            raise bad_request("HMS-Dry-Run takes one value: cost", code="BAD_DRY_RUN")
        return True

    @staticmethod
    def _idempotency_key(request: Request) -> str | None:
        key = request.headers.get("idempotency-key")
        if key is None:
            return None
        if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY or not key.isprintable() or not key.isascii():
            raise bad_request(
                f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters",
                code="BAD_IDEMPOTENCY_KEY",
            )
        return key


def _persisted(params: dict[str, Any]) -> PersistedRef | None:
    """The document id a request names, by any of the three protocols (one at most)."""
    found: list[PersistedRef] = []
    extensions = params.get("extensions")
    apq = extensions.get("persistedQuery") if isinstance(extensions, dict) else None
    try:
        if apq is not None:
            if not isinstance(apq, dict) or apq.get("version") != 1:
                raise bad_request(
                    "Unsupported persisted query version: send extensions.persistedQuery"
                    " {version: 1, sha256Hash}"
                )
            found.append(PersistedRef(parse_id(apq.get("sha256Hash"), "apq"), "apq"))
        for name in ("documentId", "doc_id"):
            if params.get(name) is not None:
                found.append(PersistedRef(parse_id(params[name], name), name))
    except BadDocumentId as error:
        raise bad_request(f"Malformed document id: {error}") from None
    if len(found) > 1:
        raise bad_request("Name the document once: one of documentId, doc_id or persistedQuery")
    return found[0] if found else None


def _validated(request: Request, reply: Reply) -> Response:
    """A GET answer with its ETag; ``304 Not Modified`` when the client holds it already."""
    tag = '"' + hashlib.sha256(reply.body).hexdigest()[:32] + '"'
    headers = {**reply.headers, "ETag": tag}
    wanted = request.headers.get("if-none-match", "")
    if tag in (t.strip().removeprefix("W/") for t in wanted.split(",")) or wanted.strip() == "*":
        return Response(status_code=304, headers=headers)
    return _response(dataclasses.replace(reply, headers=headers))


def _response(reply: Reply) -> Response:
    return Response(
        reply.body,
        status_code=reply.status,
        media_type=reply.content_type,
        headers=dict(reply.headers),
    )
