"""The request steps, in order (DESIGN §3), between an HTTP request and its answer.

``http/graphql.py`` reads the transport (media types, methods, body) into a
:class:`GraphQLRequest`; :meth:`Pipeline.run` turns it into a :class:`Reply`:

1. :meth:`~Pipeline.authenticate` — a verified token for a hospital that exists;
2. :meth:`~Pipeline.document` — parsed and validated (cached), the operation chosen;
3. :meth:`~Pipeline.check_inputs` — bounds on every variable before anything runs;
4. :meth:`~Pipeline.admit` — the operation's cost: caps, then the caller's budget
   (:mod:`hms.limits.gate`); the unused part is refunded after execution;
5. :meth:`~Pipeline.execute` — one transaction under the request's deadline, idempotency for
   mutations; the compiled path (one statement) or the interpreted one;
6. :func:`encode` — the body and its status for the negotiated media type, with
   ``extensions.cost``.

A step refuses a request by raising :class:`Failure`; a refused request has ``errors`` and no
``data``. The rules a response must keep are enforced in step 5, in one place:

- *The transaction ends before the answer leaves, and nothing outlives it.* Loads still queued
  or running are awaited first; work abandoned by a failed resolver is cancelled; afterwards the
  request database refuses every statement (it can never open a second transaction).
- *What a response reports as done is exactly what is committed.* A mutation request whose
  execution produced any GraphQL error is rolled back as a whole and answers ``data: null`` with
  ``extensions.rolledBack``; domain failures (``userErrors``) are data, and each mutation field is
  atomic on its own (a savepoint), so those commit exactly what the response shows. A failed
  commit is never answered as success.
- *Every request ends by its deadline*, also in PostgreSQL, and a client that goes away has its
  request cancelled and rolled back (the HTTP layer cancels :meth:`Pipeline.run`).
- *A missing dependency is SERVICE_UNAVAILABLE (503, Retry-After), a deadline is TIMEOUT
  (504)*, never an internal error; nothing of the request (variables, SQL parameters, error
  messages of the driver) reaches a log line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from inspect import isawaitable
from typing import Any

import orjson
from graphql import (
    ExecutionResult,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
)
from graphql.execution import Middleware
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from hms.cache import keys
from hms.cache.backend import Cache
from hms.cache.tiered import Tiered
from hms.compiler import Compiler, take_patients
from hms.context import TRAIL, Context, Principal, Trail
from hms.documents import Document, DocumentCache
from hms.documents.persisted import DocumentStore, Mode, PersistedRef, document_id, mode_for
from hms.limits.budget import Budgets, MemoryBudgets
from hms.limits.cost import FieldRule, rules_from_sdl
from hms.limits.gate import Charge, CostGate, Refusal
from hms.limits.inputs import InputLimitError, InputLimitsRule, check_variables
from hms.loaders import Loaders
from hms.observability import tracing
from hms.observability.access import SEEN, Seen
from hms.observability.logs import log_failure
from hms.observability.metrics import Metrics
from hms.observability.tracing import TRACER
from hms.persistence import audit
from hms.persistence import idempotency as idempotency_keys
from hms.persistence.cipher import Cipher
from hms.persistence.database import (
    Database,
    DatabaseFailure,
    DatabaseUnavailable,
    RequestDb,
    StatementTimeout,
)
from hms.resolvers.errors import ClientError
from hms.schema import arguments, execution
from hms.schema import schema as strawberry_schema
from hms.security import policy
from hms.security.identity import Denied
from hms.security.tokens import AuthError
from hms.settings import Settings

log = logging.getLogger("hms.pipeline")

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
#: Seconds a client should wait before retrying when a dependency is down.
RETRY_AFTER = 2


@dataclasses.dataclass(frozen=True, slots=True)
class GraphQLRequest:
    """One GraphQL-over-HTTP request, already read and shape-checked by the HTTP layer."""

    query: str | None
    variables: Mapping[str, Any] | None = None
    operation_name: str | None = None
    method: str = "POST"
    #: The negotiated response media type: it decides the status of request errors.
    media_type: str = JSON
    authorization: str | None = None
    idempotency_key: str | None = None
    #: The document id the request names (APQ hash, documentId or doc_id), if any.
    persisted: PersistedRef | None = None
    #: The client application (``apollographql-client-name``): it picks the document mode.
    client_name: str | None = None
    #: ``HMS-Dry-Run: cost``: cost the operation and say where the caller stands, run nothing.
    dry_run: bool = False
    #: The caller's W3C ``traceparent`` header: the request's span continues its trace.
    traceparent: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)


class Failure(Exception):
    """The request is refused or could not run: ``errors`` only, never ``data``.

    ``status`` is the HTTP status under ``application/graphql-response+json``; ``json_status``
    the one under legacy ``application/json`` (200 for GraphQL request errors, as the
    GraphQL-over-HTTP spec asks; denials such as 401 or 503 keep their status in both).
    """

    def __init__(
        self,
        message: str,
        code: str,
        status: int,
        *,
        json_status: int | None = None,
        headers: Mapping[str, str] | None = None,
        errors: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.json_status = status if json_status is None else json_status
        self.headers = dict(headers or {})
        self.errors = (
            list(errors)
            if errors is not None
            else [{"message": message, "extensions": {"code": code}}]
        )


def bad_request(message: str, code: str = "BAD_REQUEST", status: int = 400) -> Failure:
    return Failure(message, code, status)


def not_in_list() -> Failure:
    return Failure(
        "This document is not in the list of documents this client may run",
        "PERSISTED_QUERY_NOT_IN_LIST",
        403,
    )


#: Refusals counted by hms_documents_rejected_total.
PERSISTED_CODES = frozenset(
    {
        "PERSISTED_QUERY_NOT_FOUND",
        "PERSISTED_QUERY_NOT_IN_LIST",
        "PERSISTED_QUERY_ID_REQUIRED",
        "PERSISTED_QUERY_NOT_SUPPORTED",
        "CANNOT_SEND_PQ_ID_AND_BODY",
    }
)


def unavailable(message: str) -> Failure:
    return Failure(message, "SERVICE_UNAVAILABLE", 503, headers={"Retry-After": str(RETRY_AFTER)})


def timed_out(seconds: float) -> Failure:
    return Failure(
        f"The request did not finish within its {seconds:g} s deadline and was cancelled; "
        "nothing it would have written was saved",
        "TIMEOUT",
        504,
    )


def content_type(media_type: str) -> str:
    return f"{media_type}; charset=utf-8"


def failure_reply(failure: Failure, media_type: str) -> Reply:
    status = failure.status if media_type == GRAPHQL_RESPONSE else failure.json_status
    return Reply(
        status, orjson.dumps({"errors": failure.errors}), content_type(media_type), failure.headers
    )


def mask(error: GraphQLError) -> dict[str, Any]:
    """Errors the client caused pass through; anything else is logged (PHI-free) and masked."""
    original = error.original_error
    if original is None or isinstance(original, GraphQLError):
        formatted = dict(error.formatted)
        if isinstance(original, ClientError):
            formatted["extensions"] = original.extensions
        return formatted
    log_failure(log, "unexpected error in a resolver", original, path=error.path)
    masked: dict[str, Any] = {
        "message": "Internal server error",
        "extensions": {"code": "INTERNAL_SERVER_ERROR"},
    }
    if error.locations is not None:
        masked["locations"] = [loc._asdict() for loc in error.locations]
    if error.path is not None:
        masked["path"] = error.path
    return masked


def encode(result: ExecutionResult, media_type: str) -> tuple[int, dict[str, Any]]:
    """The response body of an execution and its status for ``media_type``."""
    errors = [mask(e) for e in result.errors or ()]
    # Variable coercion failures come back with no data and no error paths: a request error.
    if result.data is None and errors and all(e.path is None for e in result.errors or ()):
        for error in errors:
            error.setdefault("extensions", {}).setdefault("code", "BAD_USER_INPUT")
        return (400 if media_type == GRAPHQL_RESPONSE else 200), {"errors": errors}
    body: dict[str, Any] = {"data": result.data}
    if errors:
        body["errors"] = errors
    return 200, body


#: A WAL position no replica reaches: the read goes to the primary.
_ALWAYS_PRIMARY = 2**63 - 1


def _written_key(principal: Principal) -> str:
    return keys.written(str(principal.hospital_id), principal.subject)


def _trace_id() -> str | None:
    seen = SEEN.get()
    return None if seen is None else seen.trace_id


class Pipeline:
    """The request steps for one schema and one set of long-lived clients."""

    def __init__(
        self,
        *,
        schema: GraphQLSchema,
        settings: Settings,
        database: Database,
        cache: Cache,
        authenticator: Callable[[str | None], Awaitable[Principal]],
        middleware: Middleware | None = None,
        metrics: Metrics | None = None,
        budgets: Budgets | None = None,
        cost_rules: Mapping[tuple[str, str], FieldRule] | None = None,
        audit_writer: audit.Writer | None = None,
    ) -> None:
        self.schema = schema
        #: Appends reads' audit events in batches (None: each read in a transaction of its own).
        self.audit_writer = audit_writer
        self.cipher = Cipher(settings.phi_keys)
        #: Answers of reference-only documents, shared by a hospital's callers (None: off).
        self.reference = (
            Tiered(
                cache,
                count=lambda result, kind: self.metrics.cache.labels(kind, result).inc(),
            )
            if settings.response_cache
            else None
        )
        self.settings = settings
        self.database = database
        self.cache = cache
        self.authenticator = authenticator
        self.metrics = metrics or Metrics()
        self.store = DocumentStore(
            cache,
            database,
            count=lambda tier, outcome: self.metrics.documents.labels(tier, outcome).inc(),
        )
        #: graphql-core middleware; None in production (a per-field hook costs on every field).
        #: Tests inject faults through it.
        self.middleware = middleware
        self.classes = policy.classes_from_sdl(strawberry_schema.as_str())
        self.compiler = (
            Compiler(
                schema,
                arguments,
                settings,
                classes=self.classes,
                count=lambda result: self.metrics.cache.labels("plans", result).inc(),
            )
            if settings.execution == "compiled"
            else None
        )
        self.costs = CostGate(
            schema,
            rules_from_sdl(strawberry_schema.as_str()) if cost_rules is None else cost_rules,
            settings,
            budgets or MemoryBudgets(),
            count=lambda code, outcome: self.metrics.cost_refusals.labels(code, outcome).inc(),
        )
        self.documents = DocumentCache(
            schema,
            size=settings.document_cache_size,
            introspection=settings.introspection,
            max_tokens=settings.max_query_tokens,
            extra_rules=(InputLimitsRule,),
            count=lambda result: self.metrics.cache.labels("documents", result).inc(),
        )

    async def run(self, request: GraphQLRequest) -> Reply:
        """Answer ``request``; its metrics and its access-log line are recorded on the way out,
        whatever happened."""
        seen = Seen()
        scope = SEEN.set(seen)
        self.metrics.in_flight.inc()
        status, outcome = 500, "INTERNAL_SERVER_ERROR"
        with TRACER.start_as_current_span(
            "graphql.request",
            context=tracing.incoming(request.traceparent),
            kind=SpanKind.SERVER,
            # An exception's message can quote patient data: spans never record one.
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            seen.trace_id = tracing.trace_id_of(span, None)
            try:
                reply, outcome = await self._run(request, seen)
                status = reply.status
                headers = {
                    **reply.headers,
                    "traceresponse": tracing.traceresponse(span, seen.trace_id),
                }
                return dataclasses.replace(reply, headers=headers)
            finally:
                self.metrics.in_flight.dec()
                SEEN.reset(scope)
                seen.done(self.metrics, status, outcome)
                self.metrics.pools(self.database.engines())
                if span.is_recording():
                    tracing.describe(span, seen, status, outcome)

    async def _run(self, request: GraphQLRequest, seen: Seen) -> tuple[Reply, str]:
        try:
            principal = await self.authenticate(request.authorization)
            seen.user, seen.hospital = principal.subject, principal.hospital_id
            seen.client = principal.client
            if request.persisted is not None:
                with TRACER.start_as_current_span("graphql.persisted"):
                    text = await self.document_text(request, principal)
            else:
                text = await self.document_text(request, principal)
            with TRACER.start_as_current_span("graphql.validate"):
                document, operation = self.document(request, text)
            if tracing.documents_traced():  # opted in: literals in a document can be PHI
                trace.get_current_span().set_attribute("graphql.document", text)
            seen.operation_type = operation.operation.value
            seen.operation_name = operation.name.value if operation.name else None
            if request.persisted is not None:
                seen.document_id = request.persisted.id
            self.check_inputs(request)
            with TRACER.start_as_current_span("graphql.cost"):
                charge = await self.admit(request, principal, document, operation)
            seen.cost_estimated = charge.requested
            if request.dry_run:
                return self.dry_run_reply(request, charge), "dry_run"
            # Kept only once it is known to be valid and within the cost limits.
            if request.persisted is not None and request.query is not None:
                await self.register(request, principal, text)
            with TRACER.start_as_current_span("graphql.execute"):
                if self.reference is not None and document.max_age and not request.dry_run:
                    reply = await self._reference(
                        request, principal, document, operation, text, charge
                    )
                else:
                    reply = await self.execute(
                        request, principal, document, operation, text, charge
                    )
            seen.cost_actual = charge.actual
            await self.costs.settle(charge)
        except Failure as failure:
            # An answer, not a fault: its traceback is never shown, and the frames on it can
            # hold the failure itself (a cycle only the collector would free).
            failure.__traceback__ = None
            if failure.code in PERSISTED_CODES:
                self.metrics.document_rejections.labels(failure.code).inc()
            if failure.code == "TIMEOUT":
                self.metrics.deadlines.inc()
            seen.errors.append(failure.code)
            return failure_reply(failure, request.media_type), failure.code
        # Only reference data may be kept by the client, and only from a GET (hms.documents
        # .caching); everything else, patient data above all, is not stored anywhere.
        cacheable = request.method == "GET" and reply.status == 200 and document.max_age
        control = f"private, max-age={document.max_age}" if cacheable else "no-store"
        headers = {**reply.headers, **charge.headers(), "Cache-Control": control}
        return dataclasses.replace(reply, headers=headers), "partial" if seen.errors else "ok"

    async def admit(
        self,
        request: GraphQLRequest,
        principal: Principal,
        document: Document,
        operation: OperationDefinitionNode,
    ) -> Charge:
        assert document.ast is not None
        try:
            return await self.costs.admit(
                document.ast,
                operation,
                request.variables,
                principal,
                request.client_name,
                dry_run=request.dry_run,
            )
        except Refusal as refusal:
            refusal.__traceback__ = None
            extensions = {"code": refusal.code, **refusal.extensions}
            error = {"message": str(refusal), "extensions": extensions}
            raise Failure(
                str(refusal),
                refusal.code,
                refusal.status,
                headers=refusal.headers,
                errors=[error],
            ) from None

    def dry_run_reply(self, request: GraphQLRequest, charge: Charge) -> Reply:
        """What the operation would cost and where the caller stands; nothing ran."""
        body = {
            "errors": [
                {
                    "message": "Dry run: the operation was costed, not run",
                    "extensions": {"code": "DRY_RUN"},
                }
            ],
            "extensions": {"cost": charge.extension()},
        }
        headers = {**charge.headers(), "Cache-Control": "no-store"}
        return Reply(200, orjson.dumps(body), content_type(request.media_type), headers)

    def mode(self, request: GraphQLRequest, principal: Principal) -> Mode:
        settings = self.settings
        return mode_for(
            settings.document_mode,
            settings.document_modes,
            claimed=principal.client,
            named=request.client_name,
        )

    async def document_text(self, request: GraphQLRequest, principal: Principal) -> str:
        """The document to run: the request's own text, or the body its id names.

        Which a client may send depends on its mode (hms.documents.persisted.Mode).
        """
        mode = self.mode(request, principal)
        ref, text = request.persisted, request.query
        if ref is not None and text is not None:
            if ref.protocol != "apq":
                raise bad_request(
                    "Send either a document id or the document, not both",
                    code="CANNOT_SEND_PQ_ID_AND_BODY",
                )
            if not mode.registers:
                raise bad_request(
                    "Automatic persisted queries are not supported for this client: it runs "
                    "registered documents only (hms documents push)",
                    code="PERSISTED_QUERY_NOT_SUPPORTED",
                )
            if document_id(text) != ref.id:
                raise bad_request("provided sha does not match query")
            return text
        if ref is not None:
            try:
                body = await self.store.find(ref.id, trusted_only=mode.trusted)
            except DatabaseFailure:
                raise unavailable("The database is unavailable; retry shortly") from None
            if body is not None:
                return body
            if mode.trusted:
                raise not_in_list()
            # Apollo clients send the full document only after this exact answer (HTTP 200).
            raise Failure(
                "PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND", 200, json_status=200
            )
        if text is None:
            if mode.trusted:
                raise bad_request(
                    "Send the id of a registered document", code="PERSISTED_QUERY_ID_REQUIRED"
                )
            raise bad_request(
                "Provide the GraphQL document as a non-empty 'query' string, or its id"
                " (documentId, doc_id or extensions.persistedQuery)"
            )
        if mode.trusted or mode.name == "audit":
            try:
                trusted = await self.store.is_trusted(document_id(text))
            except DatabaseFailure:
                raise unavailable("The database is unavailable; retry shortly") from None
            if not trusted:
                if mode.trusted:
                    raise not_in_list()
                # Audit: the id says which document, never its text (it may hold PHI).
                log.warning(
                    "document %s outside the registry, client %s",
                    document_id(text),
                    request.client_name or "-",
                )
        return text

    async def register(self, request: GraphQLRequest, principal: Principal, text: str) -> None:
        """Keep a validated document sent with its APQ hash, within the client's limits."""
        assert request.persisted is not None
        mode = self.mode(request, principal)
        if len(text.encode()) > self.settings.apq_max_bytes:
            self.metrics.documents.labels("cache", "too_large").inc()
            return
        if mode.name != "open":
            key = keys.apq_registrations(principal.subject, str(principal.hospital_id))
            try:
                count = await self.cache.incr(key, ttl=60.0)
            except Exception:  # no cache, no registration; the request still runs
                return
            if count > self.settings.apq_registrations_per_minute:
                self.metrics.documents.labels("cache", "rate_limited").inc()
                return
        await self.store.register(request.persisted.id, text)

    async def authenticate(self, authorization: str | None) -> Principal:
        try:
            principal = await self.authenticator(authorization)
        except AuthError as error:
            raise Failure(
                str(error),
                "UNAUTHENTICATED",
                401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            ) from None
        except Denied as denied:
            raise Failure(str(denied), "FORBIDDEN", 403) from None
        except DatabaseFailure:
            raise unavailable("The database is unavailable; retry shortly") from None
        if not policy.known(principal.roles):
            raise Failure(
                "The token carries none of the roles "
                + ", ".join(policy.ROLES)
                + "; it may not read or write anything",
                "FORBIDDEN",
                403,
            )
        return principal

    def document(
        self, request: GraphQLRequest, text: str
    ) -> tuple[Document, OperationDefinitionNode]:
        document = self.documents.get(text)
        operation = document.operation(request.operation_name)
        if document.ast is not None and operation is None:
            raise bad_request(
                "Provide 'operationName' naming one operation of the document"
                if request.operation_name is None
                else f"Unknown operation named {request.operation_name!r}"
            )
        # Checked before validation: GET must never run a mutation, valid or not.
        if (
            operation is not None
            and operation.operation is not OperationType.QUERY
            and request.method == "GET"
        ):
            raise Failure(
                f"{operation.operation.value}s are not allowed over GET; use POST",
                "METHOD_NOT_ALLOWED",
                405,
                headers={"Allow": "POST"},
            )
        if document.errors or operation is None:
            code = "GRAPHQL_PARSE_FAILED" if document.ast is None else "GRAPHQL_VALIDATION_FAILED"
            errors = [
                {**e.formatted, "extensions": {**(e.extensions or {}), "code": code}}
                for e in document.errors
            ]
            raise Failure(document.errors[0].message, code, 400, json_status=200, errors=errors)
        return document, operation

    def check_inputs(self, request: GraphQLRequest) -> None:
        if request.variables:
            try:
                check_variables(request.variables)
            except InputLimitError as error:
                raise Failure(str(error), "BAD_USER_INPUT", 400, json_status=200) from None

    async def execute(
        self,
        request: GraphQLRequest,
        principal: Principal,
        document: Document,
        operation: OperationDefinitionNode,
        text: str,
        charge: Charge,
    ) -> Reply:
        readonly = operation.operation is OperationType.QUERY
        timeout = self.settings.read_timeout if readonly else self.settings.write_timeout
        idempotency = None if readonly else self._idempotency(request, text)
        routed = readonly and self.database.routing is not None
        written = await self._written(principal) if routed else 0
        deadline = asyncio.get_running_loop().time() + timeout
        for attempt in (1, 2):
            left = max(deadline - asyncio.get_running_loop().time(), 0.001)
            db = self.database.request(
                principal.hospital_id,
                readonly=readonly,
                timeout=left,
                written=written,
                replica=attempt == 1,
            )
            if readonly:
                self.metrics.reads.labels(
                    "replica" if self.database.on_replica(db) else "primary"
                ).inc()
            try:
                return await self._attempt(
                    request, principal, document, operation, db, idempotency, charge, budget=timeout
                )
            except DatabaseUnavailable:
                if (
                    attempt == 1
                    and routed
                    and db.failure is not None
                    and self.database.on_replica(db)
                ):
                    # A replica failed under a read: the primary answers it instead.
                    self.database.replica_failed(db)
                    self.metrics.replica_fallbacks.inc()
                    continue
                raise unavailable("The database is unavailable; retry shortly") from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(
        self,
        request: GraphQLRequest,
        principal: Principal,
        document: Document,
        operation: OperationDefinitionNode,
        db: RequestDb,
        idempotency: tuple[str, bytes] | None,
        charge: Charge,
        *,
        budget: float,
    ) -> Reply:
        """Run the operation on ``db`` (``budget``: the request's whole time limit, for the
        answer when it runs out): DatabaseUnavailable propagates (the caller may retry a
        read on the primary); every other failure is answered here."""
        readonly = db.readonly
        # The patients this request reads or writes on the interpreted path (its objects say
        # so as they are built), and why; the compiled path names its patients in its answer.
        trail = Trail(trace_id=_trace_id())
        scope = TRAIL.set(trail)
        try:
            try:
                assert db.deadline is not None
                async with asyncio.timeout_at(db.deadline):
                    reply, commit = await self._in_transaction(
                        request, principal, document, operation, db, idempotency, charge
                    )
                    await self._end(db, commit=commit)
                    if commit and db.committed is not None:
                        await self._wrote(principal, db.committed)
                    if readonly and trail.patients:
                        await self._audit_read(principal, document, operation, trail, reply)
            except TimeoutError:
                raise timed_out(budget) from None
            return reply
        except DatabaseFailure as failure:
            if isinstance(failure, StatementTimeout):
                raise timed_out(budget) from None
            if isinstance(failure, DatabaseUnavailable):
                raise
            raise unavailable("The database is unavailable; retry shortly") from None
        finally:
            TRAIL.reset(scope)
            seen = SEEN.get()
            if seen is not None:
                seen.statements = db.statements
                if db.waited is not None:
                    self.metrics.pool_wait.observe(db.waited)
            if not db.closed:  # a refusal, a deadline, a cancelled request: nothing is kept
                await db.close()

    async def _reference(
        self,
        request: GraphQLRequest,
        principal: Principal,
        document: Document,
        operation: OperationDefinitionNode,
        text: str,
        charge: Charge,
    ) -> Reply:
        """A document that reads reference data only (a hospital, its practitioners: no patient
        data, nothing a role hides): its ``data`` is kept in the two-level cache, per hospital
        and roles, for as long as clients may keep it (``Cache-Control``), and shared by every
        caller of that hospital. Errors are never kept."""
        assert self.reference is not None
        assert document.max_age
        canonical = orjson.dumps(
            [text, request.operation_name, request.variables or {}, sorted(principal.roles)],
            option=orjson.OPT_SORT_KEYS,
        )
        key = hashlib.sha256(canonical).hexdigest()
        answered: list[Reply] = []

        async def load() -> bytes | None:
            reply = await self.execute(request, principal, document, operation, text, charge)
            answered.append(reply)
            body = orjson.loads(reply.body) if reply.status == 200 else {}
            if "errors" in body or body.get("data") is None:
                return None
            data: bytes = orjson.dumps(body["data"])
            return data

        data = await self.reference.get_or_load(
            f"reference:{principal.hospital_id}", key, load, ttl=document.max_age, kind="reference"
        )
        if answered:  # this request ran it
            return answered[0]
        if data is None:  # another request's run failed: run this one itself
            return await self.execute(request, principal, document, operation, text, charge)
        self._seen_path("cache")
        cost = charge.finish_text(data)
        body = b'{"data":' + data + b',"extensions":' + orjson.dumps({"cost": cost}) + b"}"
        return Reply(200, body, content_type(request.media_type))

    async def _written(self, principal: Principal) -> int:
        """Where the primary's WAL was after this user's last write here (0: none lately); a
        cache that cannot say sends the read to the primary."""
        try:
            raw = await self.cache.get(_written_key(principal))
        except Exception:
            self.metrics.cache_fallbacks.labels("written").inc()
            return _ALWAYS_PRIMARY
        return 0 if raw is None else int(raw)

    async def _wrote(self, principal: Principal, position: int) -> None:
        try:
            await self.cache.set(
                _written_key(principal),
                str(position).encode(),
                ttl=self.settings.read_your_writes_seconds,
            )
        except Exception:  # the write stands; this user's reads may meet an older replica
            self.metrics.cache_fallbacks.labels("written").inc()

    async def _in_transaction(
        self,
        request: GraphQLRequest,
        principal: Principal,
        document: Document,
        operation: OperationDefinitionNode,
        db: RequestDb,
        idempotency: tuple[str, bytes] | None,
        charge: Charge,
    ) -> tuple[Reply, bool]:
        """Run the operation inside the request's transaction: the reply, and whether to commit."""
        now = dt.datetime.now(dt.UTC)
        if self.compiler is not None and db.readonly:
            compiled = await self._compiled(
                request, principal, document, operation, db, now, charge
            )
            if compiled is not None:
                self._seen_path("compiled")
                return compiled, False
        self._seen_path("interpreted")
        if idempotency is not None:
            key, fingerprint = idempotency
            claimed = await idempotency_keys.claim(
                db, principal.subject, key, fingerprint, self.settings.idempotency_ttl
            )
            if claimed.outcome == "mismatch":
                raise bad_request(
                    "This Idempotency-Key was already used for a different request; "
                    "use a new key for a new request",
                    code="IDEMPOTENCY_KEY_REUSED",
                    status=422,
                )
            if claimed.outcome == "replay":
                charge.finish(None)  # nothing ran: the whole estimate goes back
                reply = Reply(
                    claimed.status,
                    claimed.response,
                    claimed.media_type,
                    {"Idempotent-Replayed": "true"},
                )
                return reply, False
        loaders = Loaders(db)
        context = Context(
            principal=principal,
            db=db,
            loaders=loaders,
            settings=self.settings,
            cache=self.cache,
            now=now,
            cipher=self.cipher,
        )
        try:
            outcome = execution.run(
                self.schema,
                document.ast,  # type: ignore[arg-type]  # validated documents parsed
                context=context,
                variables=request.variables,
                operation_name=request.operation_name,
                middleware=self.middleware,
                hide_suggestions=self.documents.hide_suggestions,
            )
            result: ExecutionResult = await outcome if isawaitable(outcome) else outcome
            # Loads a failed resolver left queued or running finish now, inside the transaction.
            await loaders.outstanding.settle()
        finally:
            loaders.close()
            for name, size in loaders.outstanding.batches:
                self.metrics.loader_batch.labels(name).observe(size)
        if db.failure is not None:  # a resolver may have turned it into a field error
            raise db.failure
        status, body = encode(result, request.media_type)
        seen = SEEN.get()
        if seen is not None:
            seen.errors += [
                e.get("extensions", {}).get("code", "-") for e in body.get("errors", ())
            ]
        if "data" in body:
            body["extensions"] = {"cost": charge.finish(result.data)}
        else:
            charge.finish(None)
        execution.release_tracebacks(result.errors or ())
        commit = not db.readonly and "data" in body  # no data: a request error, nothing ran
        if commit and result.errors:
            # Part of the document failed: keep none of it, and say so.
            body = {
                "data": None,
                "errors": body["errors"],
                "extensions": {"rolledBack": True, **body["extensions"]},
            }
            commit = False
        trail = TRAIL.get()
        if commit and trail is not None and trail.patients:
            await audit.append(
                db, self._event(principal, document, operation, trail, bool(result.errors))
            )
            self.metrics.audit_events.labels("request").inc()
        payload = orjson.dumps(body)
        media_type = content_type(request.media_type)
        if idempotency is not None and commit:
            await idempotency_keys.store(
                db, principal.subject, idempotency[0], status, media_type, payload
            )
        return Reply(status, payload, media_type), commit

    def _event(
        self,
        principal: Principal,
        document: Document,
        operation: OperationDefinitionNode,
        trail: Trail,
        partial: bool,
    ) -> audit.Event:
        assert document.ast is not None
        name = operation.name.value if operation.name else None
        classes = document.derived.get(name)
        if classes is None:
            classes = document.derived[name] = sorted(
                c.value
                for c in policy.selected_classes(self.schema, self.classes, document.ast, operation)
            )
        return audit.Event(
            subject=principal.subject,
            roles=sorted(principal.roles),
            client=principal.client,
            operation_type=operation.operation.value,
            operation_name=name,
            patient_ids=sorted(trail.patients),
            field_classes=classes,
            outcome="partial" if partial else "ok",
            purpose="ETREAT" if trail.emergency else "TREAT",
            reason=trail.reason,
            trace_id=trail.trace_id,
        )

    async def _audit_read(
        self,
        principal: Principal,
        document: Document,
        operation: OperationDefinitionNode,
        trail: Trail,
        reply: Reply | None,
    ) -> None:
        """A read's audit event, durable before the answer leaves: with the reads of the same
        moment when there is a writer, else in a short transaction of its own (the read ran
        read-only)."""
        partial = reply is not None and b'"errors":' in reply.body
        event = self._event(principal, document, operation, trail, partial)
        if self.audit_writer is not None:
            await self.audit_writer.append(principal.hospital_id, event)
            self.metrics.audit_events.labels("batch").inc()
            return
        db = self.database.request(
            principal.hospital_id,
            readonly=False,
            timeout=self.settings.write_timeout,
            replica=False,
        )
        try:
            await audit.append(db, event)
            await db.close(commit=True)
            self.metrics.audit_events.labels("request").inc()
        finally:
            if not db.closed:
                await db.close()

    async def _compiled(
        self,
        request: GraphQLRequest,
        principal: Principal,
        document: Document,
        operation: OperationDefinitionNode,
        db: RequestDb,
        now: dt.datetime,
        charge: Charge,
    ) -> Reply | None:
        """The reply of the compiled statement, or None to run the interpreted path instead."""
        assert self.compiler is not None
        assert document.ast is not None
        try:
            compiled = self.compiler.prepare(
                document.ast,
                operation,
                request.variables,
                hospital_id=principal.hospital_id,
                subject=principal.subject,
                roles=sorted(principal.roles),
                now=now,
                readable=policy.readable(principal.roles),
                client=principal.client,
            )
        except Exception as error:  # a compiler bug must not cost the request: run interpreted
            log_failure(log, "compiling a query failed; answered interpreted", error)
            return None
        if compiled is None:
            return None
        data, ok = await db.fetch_json(compiled.sql, compiled.params)
        if not ok:  # a cursor no visible row anchors: the interpreted path says so
            return None
        if compiled.touches:
            # The answer names its patients in hidden keys: out they come, into the audit trail.
            data, patients, confidential = take_patients(data)
            if confidential:
                # A confidential record whose guarded fields the document selects: the
                # interpreted path checks the caller's emergency grants field by field.
                return None
            if patients:
                await self._audit_read(
                    principal,
                    document,
                    operation,
                    Trail(patients=patients, trace_id=_trace_id()),
                    None,
                )
        text = data.encode()
        cost = charge.finish_text(text)
        body = b'{"data":' + text + b',"extensions":' + orjson.dumps({"cost": cost}) + b"}"
        return Reply(200, body, content_type(request.media_type))

    @staticmethod
    def _seen_path(path: str) -> None:
        seen = SEEN.get()
        if seen is not None:
            seen.path = path

    async def _end(self, db: RequestDb, *, commit: bool) -> None:
        """End the transaction; a commit that fails is never answered as success."""
        if not commit:
            await db.close()
            return
        try:
            # Shielded: a client that leaves during COMMIT must not make its outcome unknown.
            position = self.database.routing is not None  # for read-your-writes on replicas
            await asyncio.shield(db.close(commit=True, position=position))
        except DatabaseUnavailable:
            raise unavailable(
                "The database connection failed while saving: the writes may or may not have "
                "been saved. Retry with the same Idempotency-Key to find out safely"
            ) from None
        except Exception as error:  # PostgreSQL refused the commit: it rolled everything back
            log_failure(log, "commit failed", error)
            raise Failure(
                "Internal server error: the request's writes were not saved",
                "INTERNAL_SERVER_ERROR",
                500,
            ) from None

    def _idempotency(self, request: GraphQLRequest, text: str) -> tuple[str, bytes] | None:
        """The request's ``Idempotency-Key`` and a fingerprint of what it asks for (the same
        document by id or as text is the same request)."""
        key = request.idempotency_key
        if key is None:
            return None
        wanted = {
            "query": text,
            "variables": request.variables,
            "operationName": request.operation_name,
        }
        fingerprint = hashlib.sha256(orjson.dumps(wanted, option=orjson.OPT_SORT_KEYS)).digest()
        return key, fingerprint
