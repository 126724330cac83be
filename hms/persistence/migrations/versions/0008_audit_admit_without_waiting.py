"""Appending an audit event never waits for the sealer.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 12:00:00

``audit_admit()`` (migration 0005) made sure a hospital had its ``audit_head`` row with
``INSERT ... ON CONFLICT DO NOTHING`` on every event. When the row exists and a sealer has
updated it in a transaction not yet committed, that insert waits for the sealer's commit to
know whether the conflict stands: a sealer whose commit is delayed (a stalled worker, a slow
network) held up every request of that hospital until their deadlines (504). The trigger now
looks first, with a plain read that never waits on a row lock, and inserts only for a
hospital's very first event.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ADMIT = """
CREATE OR REPLACE FUNCTION audit_admit() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
  -- The sealer finds hospitals through audit_head (hospital has row-level security).
  {head}
  NEW.at := now();
  NEW.seq := NULL;
  NEW.prev_hash := NULL;
  NEW.hash := NULL;
  RETURN NEW;
END $$
"""

_INSERT = (
    "INSERT INTO audit_head (hospital_id, seq, hash) VALUES (NEW.hospital_id, 0, ''::bytea)\n"
    "    ON CONFLICT (hospital_id) DO NOTHING;"
)


def upgrade() -> None:
    op.execute(
        _ADMIT.format(
            head="IF NOT EXISTS (SELECT 1 FROM audit_head WHERE hospital_id = NEW.hospital_id)"
            f" THEN\n    {_INSERT}\n  END IF;"
        )
    )


def downgrade() -> None:
    op.execute(_ADMIT.format(head=_INSERT))
