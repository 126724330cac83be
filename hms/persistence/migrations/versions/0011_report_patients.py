"""Reports keep the patients they name.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 13:00:00

Each download of a report is audited with the patients in it. They were read back from the
CSV on every download (the whole file parsed on the request's path); the job now stores them
with the content. Reports written before stay NULL and are read from their CSV as before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("report", sa.Column("patient_ids", postgresql.ARRAY(sa.UUID()), nullable=True))


def downgrade() -> None:
    op.drop_column("report", "patient_ids")
