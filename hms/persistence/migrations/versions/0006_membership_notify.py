"""Membership changes are announced on the ``hms_membership`` channel, so workers forget them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 10:00:00

Each worker caches a user's roles per hospital for ``membership_ttl`` seconds. Memberships
change in another process (``hms members``, or plain SQL), so without a signal a removed member
keeps access for up to that long in every worker. A row trigger now sends
``pg_notify('hms_membership', '<hospital_id> <subject>')`` for the old and the new row of every
insert, update and delete; a TRUNCATE sends ``'*'`` ("forget everything"). PostgreSQL delivers
a notification only when the transaction commits, and folds duplicates within one transaction.
The payload holds ids only (the subject is the provider's opaque ``sub``). 0004 bounds a subject
to 255 characters (at most 1020 bytes), far below pg_notify's 8000-byte limit; should that bound
ever be lifted, a payload too long to send becomes ``'*'`` instead of failing the write.
"""

from collections.abc import Sequence

from alembic import op

CHANNEL = "hms_membership"

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        f"""
        CREATE FUNCTION membership_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
          payload text;
        BEGIN
          IF TG_OP = 'TRUNCATE' THEN
            PERFORM pg_notify('{CHANNEL}', '*');
            RETURN NULL;
          END IF;
          IF TG_OP IN ('UPDATE', 'DELETE') THEN
            payload := OLD.hospital_id::text || ' ' || OLD.subject;
            PERFORM pg_notify('{CHANNEL}',
                              CASE WHEN octet_length(payload) < 8000 THEN payload ELSE '*' END);
          END IF;
          IF TG_OP IN ('INSERT', 'UPDATE') THEN
            payload := NEW.hospital_id::text || ' ' || NEW.subject;
            PERFORM pg_notify('{CHANNEL}',
                              CASE WHEN octet_length(payload) < 8000 THEN payload ELSE '*' END);
          END IF;
          RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER hospital_membership_notify"
        " AFTER INSERT OR UPDATE OR DELETE ON hospital_membership"
        " FOR EACH ROW EXECUTE FUNCTION membership_notify()"
    )
    op.execute(
        "CREATE TRIGGER hospital_membership_notify_truncate AFTER TRUNCATE ON hospital_membership"
        " FOR EACH STATEMENT EXECUTE FUNCTION membership_notify()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER hospital_membership_notify_truncate ON hospital_membership")
    op.execute("DROP TRIGGER hospital_membership_notify ON hospital_membership")
    op.execute("DROP FUNCTION membership_notify()")
