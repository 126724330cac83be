"""The root Query type (DESIGN §5)."""

from __future__ import annotations

from typing import Any

import strawberry

from hms.resolvers import audit_trail, emergency, lists, nodes
from hms.resolvers import patients as patient_resolvers
from hms.resolvers import reports as report_resolvers
from hms.resolvers.errors import BadUserInput, Forbidden
from hms.schema.directives import AGGREGATE, BY_IDS, NESTED_PAGE, PAGE
from hms.schema.types.audit import AuditTrail, EmergencyGrants, grants_of, trail_of
from hms.schema.types.connection import Connection, connection
from hms.schema.types.inputs import (
    AppointmentFilter,
    AppointmentOrder,
    EncounterFilter,
    PatientFilter,
    PatientOrder,
    PractitionerFilter,
)
from hms.schema.types.nodes import (
    NODE_TYPES,
    Appointment,
    Encounter,
    Hospital,
    Info,
    Node,
    Patient,
    Practitioner,
    Report,
)
from hms.security.policy import AUDIT_READERS, may_report, report_refusal


@strawberry.type(description="The caller: who they are, where, and as what.")
class Viewer:
    user_id: str
    roles: list[str]
    _hospital_pk: strawberry.Private[Any]

    @strawberry.field
    async def hospital(self, info: Info) -> Hospital:
        row = await info.context.loaders.hospital_by_id.load(self._hospital_pk)
        if row is None:
            raise LookupError("the caller's hospital does not exist")
        return Hospital.from_row(row)


@strawberry.type(description="Counts for the patient stats card, from one aggregate statement.")
class PatientStats:
    total: int
    active: int
    new_last_30_days: int


def _node(info: Info, found: tuple[str, Any] | None) -> Node | None:
    if found is None:
        return None
    type_name, row = found
    if type_name == "Report" and not may_report(info.context.principal.roles):
        return None  # for node(), a report the caller may not read is one it cannot see
    node: Node = NODE_TYPES[type_name].from_row(row)
    return node


@strawberry.type
class Query:
    @strawberry.field(description="Any object by global id; null when missing or not visible.")
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        return _node(info, await nodes.node(info.context, id))

    @strawberry.field(
        description="Objects by global id, in order; null where missing.", directives=[BY_IDS]
    )
    async def nodes(self, info: Info, ids: list[strawberry.ID]) -> list[Node | None]:
        if len(ids) > info.context.settings.max_page_size:
            raise BadUserInput(f"'ids' takes at most {info.context.settings.max_page_size} ids")
        return [_node(info, item) for item in await nodes.nodes(info.context, ids)]

    @strawberry.field(
        description=(
            "Who read or wrote this patient's data, newest first (auditors and administrators;"
            " events appear once sealed, within a second)."
        ),
        directives=[NESTED_PAGE],
    )
    async def audit_trail(
        self,
        info: Info,
        patient_id: strawberry.ID,
        first: int | None = None,
        after: str | None = None,
    ) -> AuditTrail | None:
        if AUDIT_READERS.isdisjoint(info.context.principal.roles):
            raise Forbidden("Only auditors and administrators read the audit trail")
        rows, has_next = await audit_trail.audit_trail(info.context, patient_id, first, after)
        return trail_of(rows, has_next)

    @strawberry.field(
        description=(
            "Break-the-glass grants, newest first, for review (auditors and administrators);"
            " the reads under each are the patient's auditTrail events with purpose ETREAT."
        ),
        directives=[NESTED_PAGE],
    )
    async def emergency_grants(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> EmergencyGrants | None:
        if AUDIT_READERS.isdisjoint(info.context.principal.roles):
            raise Forbidden("Only auditors and administrators review emergency grants")
        rows, has_next = await emergency.grants_page(info.context, first, after)
        return grants_of(rows, has_next)

    @strawberry.field(
        description=(
            "A report by id (administrators and clinicians); null when missing or another"
            " hospital's."
        )
    )
    async def report(self, info: Info, id: strawberry.ID) -> Report | None:
        if not may_report(info.context.principal.roles):
            raise Forbidden(report_refusal())
        row = await report_resolvers.report(info.context, id)
        return None if row is None else Report.from_row(row)

    @strawberry.field
    def viewer(self, info: Info) -> Viewer:
        p = info.context.principal
        return Viewer(user_id=p.subject, roles=sorted(p.roles), _hospital_pk=p.hospital_id)

    @strawberry.field
    async def patient(self, info: Info, id: strawberry.ID) -> Patient | None:
        row = await patient_resolvers.patient(info.context, id)
        return None if row is None else Patient.from_row(row)

    @strawberry.field
    async def patient_by_mrn(self, info: Info, mrn: str) -> Patient | None:
        row = await patient_resolvers.patient_by_mrn(info.context, mrn)
        return None if row is None else Patient.from_row(row)

    @strawberry.field(directives=[PAGE])
    async def patients(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: PatientFilter | None = None,
        order_by: PatientOrder | None = None,
    ) -> Connection[Patient]:
        args = {"first": first, "after": after, "last": last, "before": before}
        page = await lists.root_list(
            info.context, "patients", {**args, "filter": filter, "order_by": order_by}
        )
        return connection(page, Patient.from_row)

    @strawberry.field(directives=[PAGE])
    async def appointments(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: AppointmentFilter | None = None,
        order_by: AppointmentOrder | None = None,
    ) -> Connection[Appointment]:
        args = {"first": first, "after": after, "last": last, "before": before}
        page = await lists.root_list(
            info.context, "appointments", {**args, "filter": filter, "order_by": order_by}
        )
        return connection(page, Appointment.from_row)

    @strawberry.field(description="Newest first.", directives=[PAGE])
    async def encounters(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: EncounterFilter | None = None,
    ) -> Connection[Encounter]:
        args = {"first": first, "after": after, "last": last, "before": before}
        page = await lists.root_list(info.context, "encounters", {**args, "filter": filter})
        return connection(page, Encounter.from_row)

    @strawberry.field(description="By family name, then given name.", directives=[PAGE])
    async def practitioners(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: PractitionerFilter | None = None,
    ) -> Connection[Practitioner]:
        args = {"first": first, "after": after, "last": last, "before": before}
        page = await lists.root_list(info.context, "practitioners", {**args, "filter": filter})
        return connection(page, Practitioner.from_row)

    @strawberry.field(directives=[AGGREGATE])
    async def patient_stats(self, info: Info) -> PatientStats:
        row = await patient_resolvers.patient_stats(info.context)
        return PatientStats(
            total=row.total, active=row.active, new_last_30_days=row.new_last_30_days
        )
