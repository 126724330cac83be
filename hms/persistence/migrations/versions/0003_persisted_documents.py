"""Persisted documents: the registry of trusted documents, readable by the app role.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 14:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

APP_ROLE = "hms_app"

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "persisted_document",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("operation_name", sa.Text(), nullable=True),
        sa.Column("operation_type", sa.Text(), nullable=False),
        sa.Column(
            "client_names",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column(
            "app_versions",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "id ~ '^sha256:[0-9a-f]{64}$'", name=op.f("ck_persisted_document_id_format")
        ),
        sa.CheckConstraint(
            "operation_type IN ('query', 'mutation')",
            name=op.f("ck_persisted_document_operation_type"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_persisted_document")),
    )
    op.execute(f"GRANT SELECT ON persisted_document TO {APP_ROLE}")


def downgrade() -> None:
    op.drop_table("persisted_document")
