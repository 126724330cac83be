"""``GET /reports/{id}.csv``: a ready report's CSV, for the roles that request reports.

The bearer token is checked exactly as ``/graphql`` checks it (the pipeline's own
authentication step: the same 401, 403 and 503). A report that is missing, another hospital's
or not ready yet is 404, all three alike. A download discloses the patients in the CSV, so it
is audited like any read of their data, before the answer leaves (operation
``downloadReport``); if the events cannot be written, nothing is sent (503).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from opentelemetry.trace import SpanKind
from starlette.requests import Request
from starlette.responses import Response

from hms.context import Principal
from hms.http.responses import error_response
from hms.observability import tracing
from hms.observability.logs import log_failure
from hms.observability.tracing import TRACER
from hms.persistence import audit
from hms.persistence.database import DatabaseFailure, StatementTimeout
from hms.pipeline import Failure, Pipeline, timed_out, unavailable
from hms.resolvers import reports
from hms.security import policy
from hms.security.policy import FieldClass

log = logging.getLogger("hms.http")

OPERATION = "downloadReport"
#: A year's report of a large hospital names hundreds of thousands of patients. Each of them
#: must find the download in their audit trail, yet no single event (its row, the text its hash
#: covers) should grow with the report: a download is recorded as one event per this many
#: patients, all with the same operation and trace id.
PATIENTS_PER_EVENT = 1000


def events(
    principal: Principal, patients: frozenset[uuid.UUID], trace_id: str
) -> list[audit.Event]:
    """The download's audit events: none for a report that lists nobody."""
    ordered = sorted(patients)
    return [
        audit.Event(
            subject=principal.subject,
            roles=sorted(principal.roles),
            client=principal.client,
            operation_type="query",
            operation_name=OPERATION,
            patient_ids=ordered[i : i + PATIENTS_PER_EVENT],
            field_classes=[FieldClass.DEMOGRAPHIC.value],  # ids, MRNs and names
            outcome="ok",
            trace_id=trace_id,
        )
        for i in range(0, len(ordered), PATIENTS_PER_EVENT)
    ]


async def download(request: Request) -> Response:
    pipeline: Pipeline = request.app.state.pipeline
    with TRACER.start_as_current_span(
        "GET /reports",
        context=tracing.incoming(request.headers.get("traceparent")),
        kind=SpanKind.SERVER,
        record_exception=False,  # an exception's message can quote patient data
        set_status_on_exception=False,
    ) as span:
        trace_id = tracing.trace_id_of(span, None)
        try:
            response = await _serve(request, pipeline, trace_id)
        except Failure as failure:
            failure.__traceback__ = None  # an answer; its frames would hold it in a cycle
            response = error_response(
                str(failure), failure.code, status=failure.status, headers=failure.headers
            )
        except Exception as error:  # the last line of defence: JSON, masked, PHI-free
            log_failure(log, "unexpected error serving a report", error)
            response = error_response("Internal server error", "INTERNAL_SERVER_ERROR", status=500)
        response.headers["traceresponse"] = tracing.traceresponse(span, trace_id)
        return response


async def _serve(request: Request, pipeline: Pipeline, trace_id: str) -> Response:
    principal = await pipeline.authenticate(request.headers.get("authorization"))
    if not policy.may_report(principal.roles):
        raise Failure(policy.report_refusal(), "FORBIDDEN", 403)
    found = await _read(pipeline, principal, request.path_params["report_id"])
    if found is None:
        raise Failure("No ready report with this id", "NOT_FOUND", 404)
    download = await reports.download(found)
    writer: audit.Writer = request.app.state.audit_writer
    try:
        await _append(writer, principal.hospital_id, events(principal, download.patients, trace_id))
    except DatabaseFailure:
        raise unavailable("The audit trail cannot be written; retry shortly") from None
    return Response(
        download.content,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{download.filename}"',
            "Cache-Control": "no-store",
        },
    )


async def _read(pipeline: Pipeline, principal: Principal, global_id: str) -> Any:
    # On the primary: a replica that trails it could answer 404 for a report that report(id)
    # has just shown READY.
    timeout = pipeline.settings.read_timeout
    db = pipeline.database.request(
        principal.hospital_id, readonly=True, timeout=timeout, replica=False
    )
    try:
        return await reports.ready_report(db, global_id)
    except StatementTimeout:
        raise timed_out(timeout) from None
    except DatabaseFailure:
        raise unavailable("The database is unavailable; retry shortly") from None
    finally:
        await db.close()


async def _append(
    writer: audit.Writer, hospital_id: uuid.UUID, batch: Sequence[audit.Event]
) -> None:
    # Handed over at once, so the writer commits them together (in its batches).
    await asyncio.gather(*(writer.append(hospital_id, event) for event in batch))
