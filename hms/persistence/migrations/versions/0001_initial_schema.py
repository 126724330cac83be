"""Initial schema: tenant tables, no-double-booking constraint, RLS and the app role.

Revision ID: 0001
Revises:
Create Date: 2026-11-25 19:22:48.583213
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


#: The role every request runs as (``SET LOCAL ROLE``): it owns nothing and cannot bypass RLS.
APP_ROLE = "hms_app"
TENANT_TABLES = ("practitioner", "patient", "appointment", "encounter")
CURRENT_HOSPITAL = "nullif(current_setting('app.hospital_id', true), '')::uuid"


def upgrade() -> None:
    # btree_gist gives uuid '=' a GiST operator class for the exclusion constraint; it is a
    # trusted extension, so a database owner without superuser can create it too.
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    op.create_table(
        "hospital",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("slug", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("timezone", sa.Text(), server_default=sa.text("'UTC'"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hospital")),
        sa.UniqueConstraint("slug", name=op.f("uq_hospital_slug")),
    )
    op.create_table(
        "patient",
        sa.Column("hospital_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("mrn", sa.Text(), nullable=False),
        sa.Column("given_name", sa.Text(), nullable=False),
        sa.Column("family_name", sa.Text(), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("gender", sa.Text(), server_default=sa.text("'unknown'"), nullable=False),
        sa.Column("phone", sa.Text(), nullable=True),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("deceased_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("national_id_last4", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.CheckConstraint(
            "gender IN ('male', 'female', 'other', 'unknown')", name=op.f("ck_patient_gender")
        ),
        sa.CheckConstraint(
            "national_id_last4 ~ '^[0-9]{4}$'", name=op.f("ck_patient_national_id_last4")
        ),
        sa.ForeignKeyConstraint(
            ["hospital_id"], ["hospital.id"], name=op.f("fk_patient_hospital_id_hospital")
        ),
        sa.PrimaryKeyConstraint("hospital_id", "id", name=op.f("pk_patient")),
        sa.UniqueConstraint("hospital_id", "mrn", name=op.f("uq_patient_hospital_id_mrn")),
    )
    op.create_index("ix_patient_active", "patient", ["hospital_id", "active"], unique=False)
    op.create_index("ix_patient_created", "patient", ["hospital_id", "created_at"], unique=False)
    op.create_index(
        "ix_patient_name",
        "patient",
        ["hospital_id", "family_name", "given_name", "id"],
        unique=False,
    )
    op.create_table(
        "practitioner",
        sa.Column("hospital_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("given_name", sa.Text(), nullable=False),
        sa.Column("family_name", sa.Text(), nullable=False),
        sa.Column("specialty", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.ForeignKeyConstraint(
            ["hospital_id"], ["hospital.id"], name=op.f("fk_practitioner_hospital_id_hospital")
        ),
        sa.PrimaryKeyConstraint("hospital_id", "id", name=op.f("pk_practitioner")),
    )
    op.create_index(
        "ix_practitioner_name",
        "practitioner",
        ["hospital_id", "family_name", "given_name", "id"],
        unique=False,
    )
    op.create_table(
        "appointment",
        sa.Column("hospital_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("patient_id", sa.UUID(), nullable=False),
        sa.Column("practitioner_id", sa.UUID(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("cancellation_reason", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        postgresql.ExcludeConstraint(
            (sa.column("hospital_id"), "="),
            (sa.column("practitioner_id"), "="),
            (sa.text("tstzrange(start_at, end_at, '[)')"), "&&"),
            where=sa.text("status IN ('pending', 'booked', 'arrived', 'checked-in', 'fulfilled')"),
            using="gist",
            name="ex_appointment_no_double_booking",
        ),
        sa.CheckConstraint(
            "status IN ('proposed', 'pending', 'booked', 'arrived', 'fulfilled', 'cancelled', 'noshow', 'entered-in-error', 'checked-in', 'waitlist')",
            name=op.f("ck_appointment_status"),
        ),
        sa.CheckConstraint("end_at > start_at", name=op.f("ck_appointment_period")),
        sa.ForeignKeyConstraint(
            ["hospital_id", "patient_id"],
            ["patient.hospital_id", "patient.id"],
            name=op.f("fk_appointment_hospital_id_patient_id_patient"),
        ),
        sa.ForeignKeyConstraint(
            ["hospital_id", "practitioner_id"],
            ["practitioner.hospital_id", "practitioner.id"],
            name=op.f("fk_appointment_hospital_id_practitioner_id_practitioner"),
        ),
        sa.PrimaryKeyConstraint("hospital_id", "id", name=op.f("pk_appointment")),
    )
    op.create_index(
        "ix_appointment_patient_start",
        "appointment",
        ["hospital_id", "patient_id", sa.literal_column("start_at DESC")],
        unique=False,
    )
    op.create_index(
        "ix_appointment_practitioner_start",
        "appointment",
        ["hospital_id", "practitioner_id", "start_at"],
        unique=False,
    )
    op.create_index(
        "ix_appointment_start", "appointment", ["hospital_id", "start_at", "id"], unique=False
    )
    op.create_table(
        "encounter",
        sa.Column("hospital_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("patient_id", sa.UUID(), nullable=False),
        sa.Column("practitioner_id", sa.UUID(), nullable=True),
        sa.Column("appointment_id", sa.UUID(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("class", sa.Text(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.CheckConstraint(
            "status IN ('planned', 'arrived', 'triaged', 'in-progress', 'onleave', 'finished', 'cancelled', 'entered-in-error', 'unknown')",
            name=op.f("ck_encounter_status"),
        ),
        sa.CheckConstraint(
            "\"class\" IN ('AMB', 'EMER', 'IMP', 'OBSENC', 'HH', 'VR')",
            name=op.f("ck_encounter_class"),
        ),
        sa.CheckConstraint(
            "period_end IS NULL OR period_end >= period_start", name=op.f("ck_encounter_period")
        ),
        sa.ForeignKeyConstraint(
            ["hospital_id", "appointment_id"],
            ["appointment.hospital_id", "appointment.id"],
            name=op.f("fk_encounter_hospital_id_appointment_id_appointment"),
        ),
        sa.ForeignKeyConstraint(
            ["hospital_id", "patient_id"],
            ["patient.hospital_id", "patient.id"],
            name=op.f("fk_encounter_hospital_id_patient_id_patient"),
        ),
        sa.ForeignKeyConstraint(
            ["hospital_id", "practitioner_id"],
            ["practitioner.hospital_id", "practitioner.id"],
            name=op.f("fk_encounter_hospital_id_practitioner_id_practitioner"),
        ),
        sa.PrimaryKeyConstraint("hospital_id", "id", name=op.f("pk_encounter")),
    )
    op.create_index(
        "ix_encounter_appointment", "encounter", ["hospital_id", "appointment_id"], unique=False
    )
    op.create_index(
        "ix_encounter_patient_period",
        "encounter",
        ["hospital_id", "patient_id", sa.literal_column("period_start DESC"), "id"],
        unique=False,
    )
    op.create_index(
        "ix_encounter_period", "encounter", ["hospital_id", "period_start", "id"], unique=False
    )
    _secure()


def _secure() -> None:
    # Roles are cluster-wide: create once, tolerate a concurrent creator (parallel test databases).
    op.execute(f"""
        DO $$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
                CREATE ROLE {APP_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT;
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END $$""")
    # The migrating user (owner or superuser) must be able to SET ROLE to it.
    op.execute(f"""
        DO $$ BEGIN
            EXECUTE format('GRANT {APP_ROLE} TO %I', current_user);
        EXCEPTION WHEN duplicate_object OR invalid_grant_operation THEN NULL;
        END $$""")
    op.execute(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}")
    op.execute(f"GRANT SELECT ON hospital TO {APP_ROLE}")
    op.execute("ALTER TABLE hospital ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE hospital FORCE ROW LEVEL SECURITY")
    op.execute(f"CREATE POLICY tenant_isolation ON hospital USING (id = {CURRENT_HOSPITAL})")
    for table in TENANT_TABLES:
        op.execute(f"GRANT SELECT, INSERT, UPDATE ON {table} TO {APP_ROLE}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} "
            f"USING (hospital_id = {CURRENT_HOSPITAL}) "
            f"WITH CHECK (hospital_id = {CURRENT_HOSPITAL})"
        )


def downgrade() -> None:
    # Dropping the tables drops their policies and grants. The role stays: it is cluster-wide
    # and other databases on the same server may use it.
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {APP_ROLE}")
    op.drop_index("ix_encounter_period", table_name="encounter")
    op.drop_index("ix_encounter_patient_period", table_name="encounter")
    op.drop_index("ix_encounter_appointment", table_name="encounter")
    op.drop_table("encounter")
    op.drop_index("ix_appointment_start", table_name="appointment")
    op.drop_index("ix_appointment_practitioner_start", table_name="appointment")
    op.drop_index("ix_appointment_patient_start", table_name="appointment")
    op.drop_table("appointment")
    op.drop_index("ix_practitioner_name", table_name="practitioner")
    op.drop_table("practitioner")
    op.drop_index("ix_patient_name", table_name="patient")
    op.drop_index("ix_patient_created", table_name="patient")
    op.drop_index("ix_patient_active", table_name="patient")
    op.drop_table("patient")
    op.drop_table("hospital")
