"""The audit trail as the API shows it: who, when, through what, never which values."""

from __future__ import annotations

import datetime as dt
from typing import Any

import strawberry

from hms.resolvers import emergency
from hms.resolvers.audit_trail import cursor
from hms.schema.directives import EDGES
from hms.schema.types.connection import PageInfo
from hms.schema.types.mutations import EmergencyGrant


@strawberry.type(description="One operation that read or wrote the patient's data.")
class AuditEvent:
    seq: int = strawberry.field(description="Its place in the hospital's hash chain.")
    at: dt.datetime
    user_id: str
    roles: list[str]
    client: str | None = strawberry.field(description="The client application (token azp).")
    operation_type: str
    operation_name: str | None
    field_classes: list[str] = strawberry.field(
        description="The classes of patient fields the operation's document selects."
    )
    purpose: str = strawberry.field(description="TREAT, or ETREAT under break-the-glass.")
    outcome: str
    reason: str | None = strawberry.field(
        description="The user's reason, for operations that ask for one."
    )
    trace_id: str | None = strawberry.field(
        description="The W3C trace id the caller sent (traceparent), to find its own traces."
    )

    @classmethod
    def from_row(cls, row: Any) -> AuditEvent:
        return cls(
            seq=row.seq,
            at=row.at,
            user_id=row.subject,
            roles=list(row.roles),
            client=row.client,
            operation_type=row.operation_type,
            operation_name=row.operation_name,
            field_classes=list(row.field_classes),
            purpose=row.purpose,
            outcome=row.outcome,
            reason=row.reason,
            trace_id=row.trace_id,
        )


@strawberry.type
class AuditEventEdge:
    cursor: str
    node: AuditEvent


@strawberry.type(description="A patient's audit events, newest first.")
class AuditTrail:
    edges: list[AuditEventEdge] = strawberry.field(directives=[EDGES])
    page_info: PageInfo


@strawberry.type
class EmergencyGrantEdge:
    cursor: str
    node: EmergencyGrant


@strawberry.type(description="Break-the-glass grants, newest first.")
class EmergencyGrants:
    edges: list[EmergencyGrantEdge] = strawberry.field(directives=[EDGES])
    page_info: PageInfo


def _page_info(cursors: list[str], has_next: bool) -> PageInfo:
    return PageInfo(
        has_next_page=has_next,
        has_previous_page=False,
        start_cursor=cursors[0] if cursors else None,
        end_cursor=cursors[-1] if cursors else None,
    )


def trail_of(rows: list[Any], has_next: bool) -> AuditTrail:
    edges = [AuditEventEdge(cursor=cursor(row), node=AuditEvent.from_row(row)) for row in rows]
    return AuditTrail(edges=edges, page_info=_page_info([e.cursor for e in edges], has_next))


def grants_of(rows: list[Any], has_next: bool) -> EmergencyGrants:
    edges = [
        EmergencyGrantEdge(cursor=emergency.cursor(row), node=EmergencyGrant.from_row(row))
        for row in rows
    ]
    return EmergencyGrants(edges=edges, page_info=_page_info([e.cursor for e in edges], has_next))
