"""Hospital membership: which user acts in which hospital with which roles, under RLS.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 16:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

APP_ROLE = "hms_app"
CURRENT_HOSPITAL = "nullif(current_setting('app.hospital_id', true), '')::uuid"
ROLES = ("admin", "clinician", "front_desk", "auditor", "service")

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hospital_membership",
        sa.Column("hospital_id", sa.UUID(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("roles", sa.ARRAY(sa.Text()), nullable=False),
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
        sa.CheckConstraint(
            "length(subject) BETWEEN 1 AND 255",
            name=op.f("ck_hospital_membership_subject_length"),
        ),
        sa.CheckConstraint(
            "cardinality(roles) > 0 AND roles <@ ARRAY["
            + ", ".join(f"'{r}'" for r in ROLES)
            + "]::text[]",
            name=op.f("ck_hospital_membership_known_roles"),
        ),
        sa.ForeignKeyConstraint(
            ["hospital_id"],
            ["hospital.id"],
            name=op.f("fk_hospital_membership_hospital_id_hospital"),
        ),
        sa.PrimaryKeyConstraint("hospital_id", "subject", name=op.f("pk_hospital_membership")),
    )
    # The app only reads memberships; `hms members` writes them as the owner.
    op.execute(f"GRANT SELECT ON hospital_membership TO {APP_ROLE}")
    op.execute("ALTER TABLE hospital_membership ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE hospital_membership FORCE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY tenant_isolation ON hospital_membership "
        f"USING (hospital_id = {CURRENT_HOSPITAL}) WITH CHECK (hospital_id = {CURRENT_HOSPITAL})"
    )


def downgrade() -> None:
    op.drop_table("hospital_membership")
