"""Confidential records, break-the-glass grants, encrypted national ids, reasons in the audit.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 11:00:00

- ``patient.national_id_enc``: the full national id, AES-GCM encrypted by the app (key from
  settings, bound to the hospital and the patient); the database never sees the plain value.
  ``national_id_last4`` stays the only readable part.
- ``confidential`` on patients, and on their appointments and encounters: a confidential
  patient's clinical and sensitive fields are shown only under an open emergency grant. Each
  row carries the label itself (as FHIR resources carry ``meta.security``), so either execution
  path checks a row without another lookup; triggers keep the rows equal to their patient's
  label (a new appointment or encounter inherits it, a changed patient label moves to all).
- ``emergency_grant``: a clinician's time-boxed break-the-glass access to one patient, with the
  reason; append-only like the audit trail (a grant is never edited or removed, it expires).
- ``audit_event.reason``: why the user did it, for operations that need one (revealing a
  national id, opening an emergency grant). The chain covers it; ``concat_ws`` skips NULLs, so
  events sealed before this revision keep their hashes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

APP_ROLE = "hms_app"
CURRENT_HOSPITAL = "nullif(current_setting('app.hospital_id', true), '')::uuid"

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CANONICAL = """concat_ws('|', {r}.hospital_id::text, {r}.id::text, {r}.seq::text,
  to_char({r}.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), {r}.subject,
  array_to_string({r}.roles, ','), coalesce({r}.client, ''), {r}.operation_type,
  coalesce({r}.operation_name, ''), array_to_string({r}.patient_ids, ','),
  array_to_string({r}.field_classes, ','), {r}.purpose, {r}.outcome,
  coalesce({r}.trace_id, ''), {r}.reason)"""

_PREVIOUS_CANONICAL = CANONICAL.replace(", {r}.reason)", ")")

_COLUMNS = (
    "hospital_id, id, at, subject, roles, client, operation_type, operation_name,"
    " patient_ids, field_classes, purpose, outcome, trace_id"
)


def _refuse(columns: str) -> str:
    new = ", ".join(f"NEW.{c.strip()}" for c in columns.split(","))
    old = ", ".join(f"OLD.{c.strip()}" for c in columns.split(","))
    return f"""
        CREATE OR REPLACE FUNCTION audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF TG_OP = 'UPDATE' AND current_setting('hms.sealing', true) = 'on'
             AND OLD.hash IS NULL
             AND ({new}) IS NOT DISTINCT FROM ({old}) THEN
            RETURN NEW;
          END IF;
          RAISE EXCEPTION 'audit_event is append-only: % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
        END $$
        """


def _seal(canonical: str) -> str:
    return f"""
        CREATE OR REPLACE FUNCTION audit_seal(h uuid) RETURNS integer
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
        DECLARE
          head audit_head%ROWTYPE;
          e audit_event%ROWTYPE;
          sealed integer := 0;
        BEGIN
          PERFORM set_config('app.hospital_id', h::text, true);
          PERFORM set_config('hms.sealing', 'on', true);
          INSERT INTO audit_head (hospital_id, seq, hash) VALUES (h, 0, ''::bytea)
            ON CONFLICT (hospital_id) DO NOTHING;
          SELECT * INTO head FROM audit_head WHERE hospital_id = h FOR UPDATE;
          FOR e IN SELECT * FROM audit_event
                   WHERE hospital_id = h AND hash IS NULL ORDER BY id FOR UPDATE LOOP
            e.seq := head.seq + 1;
            e.prev_hash := head.hash;
            e.hash := sha256(head.hash || convert_to({canonical.format(r="e")}, 'UTF8'));
            UPDATE audit_event SET seq = e.seq, prev_hash = e.prev_hash, hash = e.hash
              WHERE hospital_id = h AND id = e.id;
            INSERT INTO audit_patient (hospital_id, patient_id, event_id)
              SELECT h, p, e.id FROM unnest(e.patient_ids) AS p ON CONFLICT DO NOTHING;
            head.seq := e.seq;
            head.hash := e.hash;
            sealed := sealed + 1;
          END LOOP;
          UPDATE audit_head SET seq = head.seq, hash = head.hash WHERE hospital_id = h;
          PERFORM set_config('hms.sealing', 'off', true);
          RETURN sealed;
        END $$
        """


def upgrade() -> None:
    # Encrypted national ids: a ciphertext always comes with its last four digits.
    op.add_column("patient", sa.Column("national_id_enc", sa.LargeBinary(), nullable=True))
    op.create_check_constraint(
        op.f("ck_patient_national_id_enc"),
        "patient",
        "national_id_enc IS NULL OR national_id_last4 IS NOT NULL",
    )
    # Confidential labels, one per row, kept equal to the patient's.
    for table in ("patient", "appointment", "encounter"):
        op.add_column(
            table,
            sa.Column("confidential", sa.Boolean(), server_default=sa.false(), nullable=False),
        )
    op.execute(
        """
        CREATE FUNCTION confidential_inherit() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          NEW.confidential := coalesce(
            (SELECT p.confidential FROM patient p
             WHERE p.hospital_id = NEW.hospital_id AND p.id = NEW.patient_id), false);
          RETURN NEW;
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION confidential_spread() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          UPDATE appointment SET confidential = NEW.confidential
            WHERE hospital_id = NEW.hospital_id AND patient_id = NEW.id;
          UPDATE encounter SET confidential = NEW.confidential
            WHERE hospital_id = NEW.hospital_id AND patient_id = NEW.id;
          RETURN NULL;
        END $$
        """
    )
    for table in ("appointment", "encounter"):
        op.execute(
            f"CREATE TRIGGER {table}_confidential BEFORE INSERT OR UPDATE OF patient_id,"
            f" confidential ON {table} FOR EACH ROW EXECUTE FUNCTION confidential_inherit()"
        )
    op.execute(
        "CREATE TRIGGER patient_confidential AFTER UPDATE OF confidential ON patient"
        " FOR EACH ROW WHEN (OLD.confidential IS DISTINCT FROM NEW.confidential)"
        " EXECUTE FUNCTION confidential_spread()"
    )
    # Break-the-glass grants.
    op.create_table(
        "emergency_grant",
        sa.Column("hospital_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("patient_id", sa.UUID(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "opened_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "expires_at > opened_at AND expires_at <= opened_at + interval '12 hours'",
            name=op.f("ck_emergency_grant_period"),
        ),
        sa.CheckConstraint(
            "char_length(reason) BETWEEN 10 AND 500", name=op.f("ck_emergency_grant_reason")
        ),
        sa.ForeignKeyConstraint(
            ["hospital_id", "patient_id"],
            ["patient.hospital_id", "patient.id"],
            name=op.f("fk_emergency_grant_hospital_id_patient_id_patient"),
        ),
        sa.PrimaryKeyConstraint("hospital_id", "id", name=op.f("pk_emergency_grant")),
    )
    op.create_index(
        "ix_emergency_grant_subject",
        "emergency_grant",
        ["hospital_id", "subject", "expires_at"],
    )
    op.execute(
        """
        CREATE FUNCTION emergency_grant_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          RAISE EXCEPTION 'emergency_grant is append-only: % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER emergency_grant_append_only BEFORE UPDATE OR DELETE ON emergency_grant"
        " FOR EACH ROW EXECUTE FUNCTION emergency_grant_refuse()"
    )
    op.execute(
        "CREATE TRIGGER emergency_grant_no_truncate BEFORE TRUNCATE ON emergency_grant"
        " FOR EACH STATEMENT EXECUTE FUNCTION emergency_grant_refuse()"
    )
    op.execute(f"GRANT SELECT, INSERT ON emergency_grant TO {APP_ROLE}")
    op.execute("ALTER TABLE emergency_grant ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE emergency_grant FORCE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY tenant_isolation ON emergency_grant "
        f"USING (hospital_id = {CURRENT_HOSPITAL}) WITH CHECK (hospital_id = {CURRENT_HOSPITAL})"
    )
    # Reasons in the audit trail, covered by the chain.
    op.add_column("audit_event", sa.Column("reason", sa.Text(), nullable=True))
    op.create_check_constraint(
        op.f("ck_audit_event_reason"),
        "audit_event",
        "reason IS NULL OR char_length(reason) BETWEEN 1 AND 500",
    )
    op.execute(_refuse(_COLUMNS + ", reason"))
    op.execute(_seal(CANONICAL))


def downgrade() -> None:
    op.execute(_seal(_PREVIOUS_CANONICAL))
    op.execute(_refuse(_COLUMNS))
    op.drop_constraint("ck_audit_event_reason", "audit_event")
    op.drop_column("audit_event", "reason")
    op.drop_table("emergency_grant")
    op.execute("DROP FUNCTION emergency_grant_refuse()")
    op.execute("DROP TRIGGER patient_confidential ON patient")
    for table in ("appointment", "encounter"):
        op.execute(f"DROP TRIGGER {table}_confidential ON {table}")
    op.execute("DROP FUNCTION confidential_spread()")
    op.execute("DROP FUNCTION confidential_inherit()")
    for table in ("patient", "appointment", "encounter"):
        op.drop_column(table, "confidential")
    op.drop_constraint("ck_patient_national_id_enc", "patient")
    op.drop_column("patient", "national_id_enc")
