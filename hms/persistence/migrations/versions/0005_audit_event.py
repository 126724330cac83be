"""Audit events: append-only, hash-chained per hospital by a sealer, under RLS, and indexed
by patient.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 16:40:00

A request appends its event with a plain INSERT: no lock, so requests of one hospital never
wait for each other. ``audit_seal_all()`` (run every second by each app worker, and by
``hms audit verify``) then gives each hospital's new events, in insertion order, the next
``seq`` and ``hash`` = sha256(previous hash || the event's canonical text), holding that
hospital's ``audit_head`` row while it does. The app role may only INSERT and SELECT events
and run the sealer; an insert cannot carry a seal of its own; UPDATE (other than sealing an
unsealed event), DELETE and TRUNCATE are refused by triggers as well, so only a superuser who
disables them can change the trail, and ``hms audit verify`` then finds the change. The sealer
also fills ``audit_patient`` (patient -> event), so "who viewed this patient" is a btree range
while a request's append stays one narrow insert (a GIN index on the events' id arrays cost
inserts about 40 %). The canonical text is also written in hms/persistence/audit.py
(CANONICAL); a test checks that the two agree.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

APP_ROLE = "hms_app"
CURRENT_HOSPITAL = "nullif(current_setting('app.hospital_id', true), '')::uuid"

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CANONICAL = """concat_ws('|', {r}.hospital_id::text, {r}.id::text, {r}.seq::text,
  to_char({r}.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), {r}.subject,
  array_to_string({r}.roles, ','), coalesce({r}.client, ''), {r}.operation_type,
  coalesce({r}.operation_name, ''), array_to_string({r}.patient_ids, ','),
  array_to_string({r}.field_classes, ','), {r}.purpose, {r}.outcome,
  coalesce({r}.trace_id, ''))"""


def upgrade() -> None:
    op.create_table(
        "audit_head",
        sa.Column("hospital_id", sa.UUID(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["hospital_id"], ["hospital.id"], name=op.f("fk_audit_head_hospital_id_hospital")
        ),
        sa.PrimaryKeyConstraint("hospital_id", name=op.f("pk_audit_head")),
    )
    op.create_table(
        "audit_event",
        sa.Column("hospital_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("roles", sa.ARRAY(sa.Text()), nullable=False),
        sa.Column("client", sa.Text(), nullable=True),
        sa.Column("operation_type", sa.Text(), nullable=False),
        sa.Column("operation_name", sa.Text(), nullable=True),
        sa.Column("patient_ids", sa.ARRAY(sa.UUID()), nullable=False),
        sa.Column("field_classes", sa.ARRAY(sa.Text()), nullable=False),
        sa.Column("purpose", sa.Text(), server_default=sa.text("'TREAT'"), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("trace_id", sa.Text(), nullable=True),
        sa.Column("prev_hash", sa.LargeBinary(), nullable=True),
        sa.Column("hash", sa.LargeBinary(), nullable=True),
        sa.CheckConstraint(
            "operation_type IN ('query', 'mutation')",
            name=op.f("ck_audit_event_operation_type"),
        ),
        sa.CheckConstraint("purpose IN ('TREAT', 'ETREAT')", name=op.f("ck_audit_event_purpose")),
        sa.ForeignKeyConstraint(
            ["hospital_id"], ["hospital.id"], name=op.f("fk_audit_event_hospital_id_hospital")
        ),
        sa.PrimaryKeyConstraint("hospital_id", "id", name=op.f("pk_audit_event")),
        sa.UniqueConstraint("hospital_id", "seq", name=op.f("uq_audit_event_hospital_id_seq")),
    )
    op.create_index(
        "ix_audit_event_unsealed",
        "audit_event",
        ["hospital_id", "id"],
        unique=False,
        postgresql_where=sa.text("hash IS NULL"),
    )
    # Which sealed events name which patient ("who viewed this patient"): filled by the
    # sealer, not by requests, so a request's append stays one narrow insert.
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
    # An insert is an unsealed event of now: it cannot bring its own time, place or seal.
    op.execute(
        """
        CREATE FUNCTION audit_admit() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
        BEGIN
          -- The sealer finds hospitals through audit_head (hospital has row-level security).
          INSERT INTO audit_head (hospital_id, seq, hash) VALUES (NEW.hospital_id, 0, ''::bytea)
            ON CONFLICT (hospital_id) DO NOTHING;
          NEW.at := now();
          NEW.seq := NULL;
          NEW.prev_hash := NULL;
          NEW.hash := NULL;
          RETURN NEW;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_event_admit BEFORE INSERT ON audit_event"
        " FOR EACH ROW EXECUTE FUNCTION audit_admit()"
    )
    # Only the sealer may change a row, only an unsealed one, and only its seal.
    op.execute(
        """
        CREATE FUNCTION audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF TG_OP = 'UPDATE' AND current_setting('hms.sealing', true) = 'on'
             AND OLD.hash IS NULL
             AND (NEW.hospital_id, NEW.id, NEW.at, NEW.subject, NEW.roles, NEW.client,
                  NEW.operation_type, NEW.operation_name, NEW.patient_ids, NEW.field_classes,
                  NEW.purpose, NEW.outcome, NEW.trace_id)
                 IS NOT DISTINCT FROM
                 (OLD.hospital_id, OLD.id, OLD.at, OLD.subject, OLD.roles, OLD.client,
                  OLD.operation_type, OLD.operation_name, OLD.patient_ids, OLD.field_classes,
                  OLD.purpose, OLD.outcome, OLD.trace_id) THEN
            RETURN NEW;
          END IF;
          RAISE EXCEPTION 'audit_event is append-only: % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_event"
        " FOR EACH ROW EXECUTE FUNCTION audit_refuse()"
    )
    op.execute(
        "CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event"
        " FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse()"
    )
    op.execute(
        f"""
        CREATE FUNCTION audit_seal(h uuid) RETURNS integer
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
    )
    op.execute(
        """
        CREATE FUNCTION audit_seal_all() RETURNS integer
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
        DECLARE
          h uuid;
          sealed integer := 0;
        BEGIN
          FOR h IN SELECT hospital_id FROM audit_head ORDER BY hospital_id LOOP
            PERFORM set_config('app.hospital_id', h::text, true);
            IF EXISTS (SELECT 1 FROM audit_event WHERE hospital_id = h AND hash IS NULL) THEN
              sealed := sealed + audit_seal(h);
            END IF;
          END LOOP;
          RETURN sealed;
        END $$
        """
    )
    op.execute("REVOKE ALL ON audit_head FROM PUBLIC")
    op.execute("REVOKE ALL ON FUNCTION audit_seal(uuid) FROM PUBLIC")
    op.execute("REVOKE ALL ON FUNCTION audit_seal_all() FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION audit_seal_all() TO {APP_ROLE}")
    op.execute(f"GRANT SELECT, INSERT ON audit_event TO {APP_ROLE}")
    op.execute("ALTER TABLE audit_event ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE audit_event FORCE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY tenant_isolation ON audit_event "
        f"USING (hospital_id = {CURRENT_HOSPITAL}) WITH CHECK (hospital_id = {CURRENT_HOSPITAL})"
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION audit_seal_all()")
    op.execute("DROP FUNCTION audit_seal(uuid)")
    op.drop_table("audit_patient")
    op.execute("DROP FUNCTION audit_index_refuse()")
    op.drop_table("audit_event")
    op.drop_table("audit_head")
    op.execute("DROP FUNCTION audit_refuse()")
    op.execute("DROP FUNCTION audit_admit()")
