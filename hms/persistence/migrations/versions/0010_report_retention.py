"""Reports expire: the app role may delete them (the worker's retention sweep).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 12:00:00

The sweep (hms.jobs.retention) deletes a hospital's reports older than
``HMS_REPORT_RETENTION_DAYS`` in a transaction bound to that hospital, as the app role: row-level
security keeps each delete to its own hospital.
"""

from collections.abc import Sequence

from alembic import op

APP_ROLE = "hms_app"

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(f"GRANT DELETE ON report TO {APP_ROLE}")


def downgrade() -> None:
    op.execute(f"REVOKE DELETE ON report FROM {APP_ROLE}")
