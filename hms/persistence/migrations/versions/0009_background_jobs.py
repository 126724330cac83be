"""Background jobs: PgQueuer's queue, webhooks, reports and visit summaries.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 10:00:00

- PgQueuer's tables, enum, indexes and NOTIFY trigger (``pgqueuer``, ``pgqueuer_log``,
  ``pgqueuer_statistics``, ``pgqueuer_schedules``), rendered by the pinned library itself
  (``pgqueuer>=1.6,<1.7``) so they are exactly what its queries expect. The app role may add
  and cancel jobs in a request's own transaction (a booking that rolls back enqueues nothing);
  only the owner role (``hms worker``, ``hms jobs``) dequeues and completes them.
- ``hospital_webhook``: where a hospital's reminders go and the secret that signs them; no grant
  to the app role.
- ``report`` (CSV exports) and ``patient_visit_summary`` (written by the clinical job): tenant
  tables under the same row-level security as the others.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from pgqueuer.adapters.persistence.qb import QueryBuilderEnvironment
from sqlalchemy.util import await_only

APP_ROLE = "hms_app"
CURRENT_HOSPITAL = "nullif(current_setting('app.hospital_id', true), '')::uuid"

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TENANT_TABLES = ("report", "patient_visit_summary")


def _script(sql: str) -> None:
    """Run several statements at once (a function body holds semicolons and blank lines, so the
    script is not split): asyncpg sends a query without arguments as one simple-query message,
    in the migration's transaction."""
    raw = op.get_bind().connection.dbapi_connection
    assert raw is not None
    await_only(raw.driver_connection.execute(sql))  # type: ignore[attr-defined]


def upgrade() -> None:
    _script(QueryBuilderEnvironment().build_install_query())
    # Enqueue (INSERT into the queue and its log) and cancel (find by dedupe key, log, delete;
    # the logging statement holds an UPDATE for failed jobs, which needs the privilege).
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON pgqueuer TO {APP_ROLE}")
    op.execute(f"GRANT INSERT ON pgqueuer_log TO {APP_ROLE}")
    op.execute(f"GRANT USAGE ON SEQUENCE pgqueuer_id_seq TO {APP_ROLE}")

    op.create_table(
        "hospital_webhook",
        sa.Column("hospital_id", sa.UUID(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("url ~ '^https?://'", name="url"),
        sa.ForeignKeyConstraint(["hospital_id"], ["hospital.id"]),
        sa.PrimaryKeyConstraint("hospital_id"),
    )
    op.create_table(
        "report",
        sa.Column("hospital_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("range_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("range_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'queued'"), nullable=False),
        sa.Column("requested_by", sa.Text(), nullable=False),
        sa.Column(
            "requested_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("row_count", sa.Integer(), nullable=True),
        sa.Column("content", sa.LargeBinary(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint("kind IN ('appointments', 'encounters')", name="kind"),
        sa.CheckConstraint("status IN ('queued', 'running', 'ready', 'failed')", name="status"),
        sa.CheckConstraint("range_end > range_start", name="range"),
        sa.ForeignKeyConstraint(["hospital_id"], ["hospital.id"]),
        sa.PrimaryKeyConstraint("hospital_id", "id"),
    )
    op.create_index("ix_report_requested", "report", ["hospital_id", "requested_at"])
    op.create_table(
        "patient_visit_summary",
        sa.Column("hospital_id", sa.UUID(), nullable=False),
        sa.Column("patient_id", sa.UUID(), nullable=False),
        sa.Column("finished_encounters", sa.Integer(), nullable=False),
        sa.Column("first_visit_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_visit_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("total_minutes", sa.BigInteger(), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["hospital_id", "patient_id"], ["patient.hospital_id", "patient.id"]
        ),
        sa.PrimaryKeyConstraint("hospital_id", "patient_id"),
    )
    for table in _TENANT_TABLES:
        op.execute(f"GRANT SELECT, INSERT, UPDATE ON {table} TO {APP_ROLE}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} "
            f"USING (hospital_id = {CURRENT_HOSPITAL}) "
            f"WITH CHECK (hospital_id = {CURRENT_HOSPITAL})"
        )


def downgrade() -> None:
    for table in ("patient_visit_summary", "report", "hospital_webhook"):
        op.drop_table(table)
    _script(QueryBuilderEnvironment().build_uninstall_query())
