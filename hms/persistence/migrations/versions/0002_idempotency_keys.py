"""Idempotency keys: stored responses of retried mutation requests, under RLS.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 19:44:48.722987
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

APP_ROLE = "hms_app"
CURRENT_HOSPITAL = "nullif(current_setting('app.hospital_id', true), '')::uuid"

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "idempotency_key",
        sa.Column("hospital_id", sa.UUID(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("media_type", sa.Text(), nullable=True),
        sa.Column("response", sa.LargeBinary(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["hospital_id"], ["hospital.id"], name=op.f("fk_idempotency_key_hospital_id_hospital")
        ),
        sa.PrimaryKeyConstraint("hospital_id", "subject", "key", name=op.f("pk_idempotency_key")),
    )
    op.create_index("ix_idempotency_key_created", "idempotency_key", ["created_at"], unique=False)
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON idempotency_key TO {APP_ROLE}")
    op.execute("ALTER TABLE idempotency_key ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE idempotency_key FORCE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY tenant_isolation ON idempotency_key "
        f"USING (hospital_id = {CURRENT_HOSPITAL}) WITH CHECK (hospital_id = {CURRENT_HOSPITAL})"
    )


def downgrade() -> None:
    op.drop_index("ix_idempotency_key_created", table_name="idempotency_key")
    op.drop_table("idempotency_key")
