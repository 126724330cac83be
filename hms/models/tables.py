"""The PostgreSQL data model as SQLAlchemy Core tables (DESIGN §4).

Core, not ORM classes: loaders read plain rows and never build ORM instances on the hot path.
Every tenant table has a composite ``(hospital_id, id)`` primary key, and every foreign key between
tenant tables is composite, so a row can never point into another hospital (and the layout is the
one Citus needs to distribute by hospital). Statuses are FHIR codes stored as text with CHECKs,
which evolve with a plain migration (PostgreSQL enum types cannot drop values).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID, ExcludeConstraint

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

GENDERS = ("male", "female", "other", "unknown")
APPOINTMENT_STATUSES = (
    "proposed",
    "pending",
    "booked",
    "arrived",
    "fulfilled",
    "cancelled",
    "noshow",
    "entered-in-error",
    "checked-in",
    "waitlist",
)
#: Statuses that hold a practitioner's time; only these take part in the no-double-booking rule.
ACTIVE_APPOINTMENT_STATUSES = ("pending", "booked", "arrived", "checked-in", "fulfilled")
ENCOUNTER_STATUSES = (
    "planned",
    "arrived",
    "triaged",
    "in-progress",
    "onleave",
    "finished",
    "cancelled",
    "entered-in-error",
    "unknown",
)
ENCOUNTER_CLASSES = ("AMB", "EMER", "IMP", "OBSENC", "HH", "VR")

#: Tables that carry ``hospital_id`` and are protected by row-level security.
TENANT_TABLES = (
    "practitioner",
    "patient",
    "appointment",
    "encounter",
    "idempotency_key",
    "hospital_membership",
    "audit_event",
    "audit_patient",
    "emergency_grant",
    "report",
    "patient_visit_summary",
)


def _in(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


def _timestamps() -> list[Column[object]]:
    return [
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("version", Integer, nullable=False, server_default=text("1")),
    ]


hospital = Table(
    "hospital",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("slug", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("timezone", Text, nullable=False, server_default=text("'UTC'")),
    UniqueConstraint("slug"),
)

practitioner = Table(
    "practitioner",
    metadata,
    Column("hospital_id", UUID(as_uuid=True), nullable=False),
    Column("id", UUID(as_uuid=True), nullable=False),
    Column("given_name", Text, nullable=False),
    Column("family_name", Text, nullable=False),
    Column("specialty", Text, nullable=False),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    PrimaryKeyConstraint("hospital_id", "id"),
    ForeignKeyConstraint(["hospital_id"], ["hospital.id"]),
    Index("ix_practitioner_name", "hospital_id", "family_name", "given_name", "id"),
)

patient = Table(
    "patient",
    metadata,
    Column("hospital_id", UUID(as_uuid=True), nullable=False),
    Column("id", UUID(as_uuid=True), nullable=False),
    Column("mrn", Text, nullable=False),
    Column("given_name", Text, nullable=False),
    Column("family_name", Text, nullable=False),
    Column("birth_date", Date, nullable=True),
    Column("gender", Text, nullable=False, server_default=text("'unknown'")),
    Column("phone", Text, nullable=True),
    Column("email", Text, nullable=True),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    Column("deceased_at", DateTime(timezone=True), nullable=True),
    Column("national_id_last4", Text, nullable=True),
    # The full national id, AES-GCM encrypted by the app (hms.security.sealed); never selected
    # by reads.
    Column("national_id_enc", LargeBinary, nullable=True),
    Column("confidential", Boolean, nullable=False, server_default=text("false")),
    *_timestamps(),
    PrimaryKeyConstraint("hospital_id", "id"),
    ForeignKeyConstraint(["hospital_id"], ["hospital.id"]),
    UniqueConstraint("hospital_id", "mrn"),
    CheckConstraint(_in("gender", GENDERS), name="gender"),
    CheckConstraint("national_id_last4 ~ '^[0-9]{4}$'", name="national_id_last4"),
    CheckConstraint(
        "national_id_enc IS NULL OR national_id_last4 IS NOT NULL", name="national_id_enc"
    ),
    Index("ix_patient_active", "hospital_id", "active"),
    Index("ix_patient_created", "hospital_id", "created_at"),
    Index("ix_patient_name", "hospital_id", "family_name", "given_name", "id"),
)

appointment = Table(
    "appointment",
    metadata,
    Column("hospital_id", UUID(as_uuid=True), nullable=False),
    Column("id", UUID(as_uuid=True), nullable=False),
    Column("patient_id", UUID(as_uuid=True), nullable=False),
    Column("practitioner_id", UUID(as_uuid=True), nullable=False),
    Column("status", Text, nullable=False),
    Column("start_at", DateTime(timezone=True), nullable=False),
    Column("end_at", DateTime(timezone=True), nullable=False),
    Column("reason", Text, nullable=True),
    Column("cancellation_reason", Text, nullable=True),
    # The patient's confidential label, kept equal to it by triggers (migration 0007).
    Column("confidential", Boolean, nullable=False, server_default=text("false")),
    *_timestamps(),
    PrimaryKeyConstraint("hospital_id", "id"),
    ForeignKeyConstraint(["hospital_id", "patient_id"], ["patient.hospital_id", "patient.id"]),
    ForeignKeyConstraint(
        ["hospital_id", "practitioner_id"], ["practitioner.hospital_id", "practitioner.id"]
    ),
    CheckConstraint(_in("status", APPOINTMENT_STATUSES), name="status"),
    CheckConstraint("end_at > start_at", name="period"),
    # No double booking: one practitioner's active appointments never overlap (SQLSTATE 23P01).
    ExcludeConstraint(
        (Column("hospital_id"), "="),
        (Column("practitioner_id"), "="),
        (func.tstzrange(Column("start_at"), Column("end_at"), "[)"), "&&"),
        name="ex_appointment_no_double_booking",
        using="gist",
        where=text(_in("status", ACTIVE_APPOINTMENT_STATUSES)),
    ),
    Index("ix_appointment_start", "hospital_id", "start_at", "id"),
    Index("ix_appointment_practitioner_start", "hospital_id", "practitioner_id", "start_at"),
    Index(
        "ix_appointment_patient_start",
        "hospital_id",
        "patient_id",
        text("start_at DESC"),
    ),
)

encounter = Table(
    "encounter",
    metadata,
    Column("hospital_id", UUID(as_uuid=True), nullable=False),
    Column("id", UUID(as_uuid=True), nullable=False),
    Column("patient_id", UUID(as_uuid=True), nullable=False),
    Column("practitioner_id", UUID(as_uuid=True), nullable=True),
    Column("appointment_id", UUID(as_uuid=True), nullable=True),
    Column("status", Text, nullable=False),
    Column("class", Text, nullable=False, key="class_"),
    Column("period_start", DateTime(timezone=True), nullable=False),
    Column("period_end", DateTime(timezone=True), nullable=True),
    Column("reason", Text, nullable=True),
    # The patient's confidential label, kept equal to it by triggers (migration 0007).
    Column("confidential", Boolean, nullable=False, server_default=text("false")),
    *_timestamps(),
    PrimaryKeyConstraint("hospital_id", "id"),
    ForeignKeyConstraint(["hospital_id", "patient_id"], ["patient.hospital_id", "patient.id"]),
    ForeignKeyConstraint(
        ["hospital_id", "practitioner_id"], ["practitioner.hospital_id", "practitioner.id"]
    ),
    ForeignKeyConstraint(
        ["hospital_id", "appointment_id"], ["appointment.hospital_id", "appointment.id"]
    ),
    CheckConstraint(_in("status", ENCOUNTER_STATUSES), name="status"),
    CheckConstraint(_in('"class"', ENCOUNTER_CLASSES), name="class"),
    CheckConstraint("period_end IS NULL OR period_end >= period_start", name="period"),
    Index(
        "ix_encounter_patient_period",
        "hospital_id",
        "patient_id",
        text("period_start DESC"),
        "id",
    ),
    Index("ix_encounter_period", "hospital_id", "period_start", "id"),
    Index("ix_encounter_appointment", "hospital_id", "appointment_id"),
)

#: Responses of mutation requests sent with an ``Idempotency-Key`` header, per caller, so a
#: retried request is answered from here instead of running twice. Written in the mutation's own
#: transaction: the key exists exactly when the mutation's effects do.
idempotency_key = Table(
    "idempotency_key",
    metadata,
    Column("hospital_id", UUID(as_uuid=True), nullable=False),
    Column("subject", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("fingerprint", LargeBinary, nullable=False),
    Column("status", Integer, nullable=True),
    Column("media_type", Text, nullable=True),
    Column("response", LargeBinary, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("hospital_id", "subject", "key"),
    ForeignKeyConstraint(["hospital_id"], ["hospital.id"]),
    Index("ix_idempotency_key_created", "created_at"),
)

#: Trusted documents (persisted queries): the registry production clients may run by id. Not
#: tenant data: one registry for every hospital, read by the app role, written by the CLI.
persisted_document = Table(
    "persisted_document",
    metadata,
    Column("id", Text, primary_key=True),  # sha256:<64 lowercase hex> of the exact body
    Column("body", Text, nullable=False),
    Column("operation_name", Text, nullable=True),
    Column("operation_type", Text, nullable=False),
    Column("client_names", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("app_versions", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("retired_at", DateTime(timezone=True), nullable=True),
    CheckConstraint("id ~ '^sha256:[0-9a-f]{64}$'", name="id_format"),
    CheckConstraint("operation_type IN ('query', 'mutation')", name="operation_type"),
)

#: Roles a membership may grant (hms.security.policy says what each reads and writes).
MEMBER_ROLES = ("admin", "clinician", "front_desk", "auditor", "service")

#: Who may act in a hospital, and as what: the authority for tokens from an OIDC provider,
#: which name a user and a hospital but cannot grant either. Read by the app role under the
#: hospital's tenant binding; written by ``hms members``.
hospital_membership = Table(
    "hospital_membership",
    metadata,
    Column("hospital_id", UUID(as_uuid=True), nullable=False),
    Column("subject", Text, nullable=False),
    Column("roles", ARRAY(Text), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("hospital_id", "subject"),
    ForeignKeyConstraint(["hospital_id"], ["hospital.id"]),
    CheckConstraint("length(subject) BETWEEN 1 AND 255", name="subject_length"),
    CheckConstraint(
        "cardinality(roles) > 0 AND roles <@ ARRAY["
        + ", ".join(f"'{r}'" for r in MEMBER_ROLES)
        + "]::text[]",
        name="known_roles",
    ),
)

#: Who read or wrote which patients' data (hms.persistence.audit): append-only, sealed into a
#: hash chain per hospital by ``audit_seal_all()`` (migration 0005); the app role may only
#: INSERT, SELECT and run the sealer.
audit_event = Table(
    "audit_event",
    metadata,
    Column("hospital_id", UUID(as_uuid=True), nullable=False),
    Column("id", BigInteger, Identity(always=True), nullable=False),
    Column("seq", BigInteger, nullable=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("subject", Text, nullable=False),
    Column("roles", ARRAY(Text), nullable=False),
    Column("client", Text, nullable=True),
    Column("operation_type", Text, nullable=False),
    Column("operation_name", Text, nullable=True),
    Column("patient_ids", ARRAY(UUID(as_uuid=True)), nullable=False),
    Column("field_classes", ARRAY(Text), nullable=False),
    Column("purpose", Text, nullable=False, server_default=text("'TREAT'")),
    Column("outcome", Text, nullable=False),
    Column("trace_id", Text, nullable=True),
    Column("prev_hash", LargeBinary, nullable=True),
    Column("hash", LargeBinary, nullable=True),
    # Why, for operations that need a reason (revealing a national id, breaking the glass).
    Column("reason", Text, nullable=True),
    PrimaryKeyConstraint("hospital_id", "id"),
    UniqueConstraint("hospital_id", "seq"),
    ForeignKeyConstraint(["hospital_id"], ["hospital.id"]),
    CheckConstraint("operation_type IN ('query', 'mutation')", name="operation_type"),
    CheckConstraint("purpose IN ('TREAT', 'ETREAT')", name="purpose"),
    CheckConstraint("reason IS NULL OR char_length(reason) BETWEEN 1 AND 500", name="reason"),
    Index("ix_audit_event_unsealed", "hospital_id", "id", postgresql_where=text("hash IS NULL")),
)

#: The newest link of each hospital's audit chain (the app role has no access).
audit_head = Table(
    "audit_head",
    metadata,
    Column("hospital_id", UUID(as_uuid=True), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", LargeBinary, nullable=False),
    PrimaryKeyConstraint("hospital_id"),
    ForeignKeyConstraint(["hospital_id"], ["hospital.id"]),
)

#: Which sealed audit events name which patient (filled by the sealer): "who viewed this
#: patient" is a btree range here.
audit_patient = Table(
    "audit_patient",
    metadata,
    Column("hospital_id", UUID(as_uuid=True), nullable=False),
    Column("patient_id", UUID(as_uuid=True), nullable=False),
    Column("event_id", BigInteger, nullable=False),
    PrimaryKeyConstraint("hospital_id", "patient_id", "event_id"),
    ForeignKeyConstraint(
        ["hospital_id", "event_id"], ["audit_event.hospital_id", "audit_event.id"]
    ),
)

#: Break-the-glass: a clinician's time-boxed access to a confidential patient's clinical and
#: sensitive fields, with the reason (migration 0007). Append-only: a grant expires, it is never
#: edited or removed, so the review sees every one.
emergency_grant = Table(
    "emergency_grant",
    metadata,
    Column("hospital_id", UUID(as_uuid=True), nullable=False),
    Column("id", BigInteger, Identity(always=True), nullable=False),
    Column("patient_id", UUID(as_uuid=True), nullable=False),
    Column("subject", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("hospital_id", "id"),
    ForeignKeyConstraint(["hospital_id", "patient_id"], ["patient.hospital_id", "patient.id"]),
    CheckConstraint(
        "expires_at > opened_at AND expires_at <= opened_at + interval '12 hours'",
        name="period",
    ),
    CheckConstraint("char_length(reason) BETWEEN 10 AND 500", name="reason"),
    Index("ix_emergency_grant_subject", "hospital_id", "subject", "expires_at"),
)

#: Where a hospital's reminders are delivered (hms.jobs.notify): a webhook URL and the secret its
#: deliveries are signed with. Only the owner role reads it (the CLI, the worker's jobs
#: connection); the app role has no grant, so no request can reach a secret.
hospital_webhook = Table(
    "hospital_webhook",
    metadata,
    Column("hospital_id", UUID(as_uuid=True), nullable=False),
    Column("url", Text, nullable=False),
    Column("secret", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("hospital_id"),
    ForeignKeyConstraint(["hospital_id"], ["hospital.id"]),
    CheckConstraint("url ~ '^https?://'", name="url"),
)

REPORT_KINDS = ("appointments", "encounters")
REPORT_STATUSES = ("queued", "running", "ready", "failed")

#: A CSV export a user asked for (``requestReport``), written by a low-priority job and kept
#: here with its content for ``HMS_REPORT_RETENTION_DAYS`` (hms.jobs.retention).
report = Table(
    "report",
    metadata,
    Column("hospital_id", UUID(as_uuid=True), nullable=False),
    Column("id", UUID(as_uuid=True), nullable=False),
    Column("kind", Text, nullable=False),
    Column("range_start", DateTime(timezone=True), nullable=False),
    Column("range_end", DateTime(timezone=True), nullable=False),
    Column("status", Text, nullable=False, server_default=text("'queued'")),
    Column("requested_by", Text, nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("row_count", Integer, nullable=True),
    Column("content", LargeBinary, nullable=True),
    # The patients the content names, stored with it: each download is audited with them
    # without reading the CSV again (NULL for reports written before migration 0011).
    Column("patient_ids", ARRAY(UUID(as_uuid=True)), nullable=True),
    # Why it failed, in words that hold no PHI (an exception's class, never its message).
    Column("error", Text, nullable=True),
    PrimaryKeyConstraint("hospital_id", "id"),
    ForeignKeyConstraint(["hospital_id"], ["hospital.id"]),
    CheckConstraint(_in("kind", REPORT_KINDS), name="kind"),
    CheckConstraint(_in("status", REPORT_STATUSES), name="status"),
    CheckConstraint("range_end > range_start", name="range"),
    Index("ix_report_requested", "hospital_id", "requested_at"),
)

#: Each patient's visits summed up by the clinical job when an encounter finishes, so reads
#: need not aggregate the encounter history.
patient_visit_summary = Table(
    "patient_visit_summary",
    metadata,
    Column("hospital_id", UUID(as_uuid=True), nullable=False),
    Column("patient_id", UUID(as_uuid=True), nullable=False),
    Column("finished_encounters", Integer, nullable=False),
    Column("first_visit_at", DateTime(timezone=True), nullable=True),
    Column("last_visit_at", DateTime(timezone=True), nullable=True),
    Column("total_minutes", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("hospital_id", "patient_id"),
    ForeignKeyConstraint(["hospital_id", "patient_id"], ["patient.hospital_id", "patient.id"]),
)
