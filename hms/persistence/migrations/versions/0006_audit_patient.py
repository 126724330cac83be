"""Audit by patient: which sealed events name which patient, for "who viewed this patient".

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 17:00:00

Filled by the sealer (``audit_seal``), not by requests: finding a patient's events costs a
btree range, and a request's append stays one narrow insert (a GIN index on the events' id
arrays cost inserts about 40 %).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

APP_ROLE = "hms_app"
CURRENT_HOSPITAL = "nullif(current_setting('app.hospital_id', true), '')::uuid"

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CANONICAL = """concat_ws('|', {r}.hospital_id::text, {r}.id::text, {r}.seq::text,
  to_char({r}.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), {r}.subject,
  array_to_string({r}.roles, ','), coalesce({r}.client, ''), {r}.operation_type,
  coalesce({r}.operation_name, ''), array_to_string({r}.patient_ids, ','),
  array_to_string({r}.field_classes, ','), {r}.purpose, {r}.outcome,
  coalesce({r}.trace_id, ''))"""


def seal_function(index: bool) -> str:
    """``audit_seal`` of migration 0005, and (``index``) filling ``audit_patient`` too."""
    fill = (
        "INSERT INTO audit_patient (hospital_id, patient_id, event_id)"
        " SELECT h, p, e.id FROM unnest(e.patient_ids) AS p ON CONFLICT DO NOTHING;"
        if index
        else ""
    )
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
            e.hash := sha256(head.hash || convert_to({CANONICAL.format(r="e")}, 'UTF8'));
            UPDATE audit_event SET seq = e.seq, prev_hash = e.prev_hash, hash = e.hash
              WHERE hospital_id = h AND id = e.id;
            {fill}
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
    op.create_table(
        "audit_patient",
        sa.Column("hospital_id", sa.UUID(), nullable=False),
        sa.Column("patient_id", sa.UUID(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["hospital_id", "event_id"],
            ["audit_event.hospital_id", "audit_event.id"],
            name=op.f("fk_audit_patient_hospital_id_audit_event"),
        ),
        sa.PrimaryKeyConstraint(
            "hospital_id", "patient_id", "event_id", name=op.f("pk_audit_patient")
        ),
    )
    op.execute(
        """
        CREATE FUNCTION audit_index_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          RAISE EXCEPTION 'audit_patient is append-only: % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_patient_append_only BEFORE UPDATE OR DELETE ON audit_patient"
        " FOR EACH ROW EXECUTE FUNCTION audit_index_refuse()"
    )
    op.execute(
        "CREATE TRIGGER audit_patient_no_truncate BEFORE TRUNCATE ON audit_patient"
        " FOR EACH STATEMENT EXECUTE FUNCTION audit_index_refuse()"
    )
    op.execute(f"GRANT SELECT ON audit_patient TO {APP_ROLE}")
    op.execute("ALTER TABLE audit_patient ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE audit_patient FORCE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY tenant_isolation ON audit_patient "
        f"USING (hospital_id = {CURRENT_HOSPITAL}) WITH CHECK (hospital_id = {CURRENT_HOSPITAL})"
    )
    op.execute(seal_function(index=True))
    # Events sealed before this migration.
    op.execute(
        "INSERT INTO audit_patient (hospital_id, patient_id, event_id)"
        " SELECT e.hospital_id, p, e.id FROM audit_event e, unnest(e.patient_ids) AS p"
        " WHERE e.hash IS NOT NULL ON CONFLICT DO NOTHING"
    )


def downgrade() -> None:
    op.execute(seal_function(index=False))
    op.drop_table("audit_patient")
    op.execute("DROP FUNCTION audit_index_refuse()")
