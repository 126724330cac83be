"""``auditTrail(patientId)``: who read or wrote this patient's data, newest first.

For auditors and administrators only (:data:`hms.security.policy.AUDIT_READERS`, checked by
the schema's field); events appear once sealed (within ``HMS_AUDIT_SEAL_SECONDS``). Keyset
pages by event, newest first; a cursor holds the event's number and nothing else.
"""

from __future__ import annotations

from typing import Any

from hms.context import Context
from hms.persistence import audit
from hms.resolvers.errors import BadUserInput
from hms.resolvers.relay import expect_global_id, serial_after, serial_cursor

PREFIX = "audit:"
DEFAULT_FIRST = 20


def cursor(row: Any) -> str:
    return serial_cursor(PREFIX, row.id)


def limit_of(ctx: Context, first: int | None) -> int:
    """A review page's size: ``first``, or 20, within the page bound."""
    limit = DEFAULT_FIRST if first is None else first
    if not 0 <= limit <= ctx.settings.max_page_size:
        raise BadUserInput(
            f"'first' must be between 0 and {ctx.settings.max_page_size}", argument="first"
        )
    return limit


async def audit_trail(
    ctx: Context, patient_id: str, first: int | None, after: str | None
) -> tuple[list[Any], bool]:
    """The page's rows and whether older events follow."""
    pk = expect_global_id(patient_id, "Patient")
    limit = limit_of(ctx, first)
    rows = await audit.trail(ctx.db, pk, serial_after(PREFIX, after), limit)
    return rows[:limit], len(rows) > limit
