"""OpenTelemetry traces: one span per GraphQL operation, with the steps that take time.

Configured only through the standard ``OTEL_*`` variables: with ``OTEL_EXPORTER_OTLP_ENDPOINT``
(or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) set, spans are batched to that collector over
OTLP/HTTP (``OTEL_SERVICE_NAME``, default ``hms``; ``OTEL_TRACES_SAMPLER``; ``OTEL_SDK_DISABLED``
and ``OTEL_TRACES_EXPORTER=none`` turn it off). Without, the API's no-op tracer stands in and a
span costs a few microseconds.

The operation's span follows the GraphQL semantic conventions (``graphql.operation.type``,
``graphql.operation.name``; the document only with ``HMS_TRACE_DOCUMENTS=true``, since literals
in a document can hold patient data), continues the caller's ``traceparent``, and has children
for parsing and validation (or the persisted-document lookup), cost analysis, each DataLoader
batch (its key count), each SQL statement (its text, never its parameters) and each Redis call.
There are no per-field spans: they would cost more than the fields.

Every request has a trace id even when nothing is exported (the caller's, else a fresh one): it
is returned in the ``traceresponse`` header and written into the audit event and the access log.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from hms.observability.access import Seen

log = logging.getLogger("hms")

#: The tracer every span of the platform comes from: a proxy that follows the process's
#: provider (the API's no-op one until :func:`configure`, or a test, installs the SDK's).
TRACER: Tracer = trace.get_tracer("hms")


def _on(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def configure(environ: Mapping[str, str] | None = None) -> bool:
    """Set up exporting from the ``OTEL_*`` variables; whether spans are exported."""
    env = os.environ if environ is None else environ
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if (
        not endpoint
        or env.get("OTEL_SDK_DISABLED", "").lower() == "true"
        or env.get("OTEL_TRACES_EXPORTER", "otlp").lower() == "none"
    ):
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({} if env.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: "hms"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    log.info("exporting traces over OTLP/HTTP")
    return True


#: ``HMS_TRACE_DOCUMENTS``, read once: every request asks.
_DOCUMENTS = _on("HMS_TRACE_DOCUMENTS")


def documents_traced() -> bool:
    return _DOCUMENTS


def incoming(traceparent: str | None) -> Context | None:
    """The caller's trace context from its ``traceparent`` header, if any."""
    if not traceparent:
        return None
    return propagate.extract({"traceparent": traceparent})


def trace_id_of(span: Span, fallback: str | None) -> str:
    """The request's trace id: its span's, else the caller's, else a fresh one."""
    context = span.get_span_context()
    if context.is_valid:
        return format(context.trace_id, "032x")
    return fallback or secrets.token_hex(16)


def traceresponse(span: Span, trace_id: str) -> str:
    """The W3C ``traceresponse`` header for the request's span."""
    context = span.get_span_context()
    if context.is_valid and context.is_remote is False:
        return f"00-{trace_id}-{format(context.span_id, '016x')}-{int(context.trace_flags):02x}"
    return f"00-{trace_id}-{secrets.token_hex(8)}-00"


def describe(span: Span, seen: Seen, status: int, outcome: str) -> None:
    """Name the request's span after its operation and say how it went (never values)."""
    if seen.operation_type != "-":
        name = seen.operation_name
        span.update_name(seen.operation_type if name is None else f"{seen.operation_type} {name}")
        span.set_attribute("graphql.operation.type", seen.operation_type)
        if name is not None:
            span.set_attribute("graphql.operation.name", name)
    span.set_attribute("http.response.status_code", status)
    span.set_attribute("hms.outcome", outcome)
    span.set_attribute("hms.sql.statements", seen.statements)
    if seen.path is not None:
        span.set_attribute("hms.execution", seen.path)
    if seen.cost_actual is not None:
        span.set_attribute("hms.cost", seen.cost_actual)
    if outcome not in ("ok", "partial", "dry_run"):
        span.set_status(Status(StatusCode.ERROR, outcome))
