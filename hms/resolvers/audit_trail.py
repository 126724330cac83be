"""``auditTrail(patientId)``: who read or wrote this patient's data, newest first.

For auditors and administrators only (:data:`hms.security.policy.AUDIT_READERS`, checked by
the schema's field); events appear once sealed (within ``HMS_AUDIT_SEAL_SECONDS``). Keyset
pages by event, newest first; a cursor holds the event's number and nothing else.
"""

from __future__ import annotations

import binascii
from typing import Any

from hms.context import Context
from hms.persistence import audit
from hms.resolvers.errors import BadUserInput
from hms.resolvers.relay import _b64, _unb64, expect_global_id, invalid_cursor

PREFIX = "audit:"
DEFAULT_FIRST = 20


def cursor(row: Any) -> str:
    return _b64(f"{PREFIX}{row.id}".encode())


def _before(after: str | None) -> int | None:
    if after is None:
        return None
    try:
        text = _unb64(after).decode("ascii")
        if not text.startswith(PREFIX) or not text[len(PREFIX) :].isdigit():
            raise ValueError(text)
        return int(text[len(PREFIX) :])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid_cursor("after") from None


async def audit_trail(
    ctx: Context, patient_id: str, first: int | None, after: str | None
) -> tuple[list[Any], bool]:
    """The page's rows and whether older events follow."""
    pk = expect_global_id(patient_id, "Patient")
    limit = DEFAULT_FIRST if first is None else first
    if not 0 <= limit <= ctx.settings.max_page_size:
        raise BadUserInput(
            f"'first' must be between 0 and {ctx.settings.max_page_size}", argument="first"
        )
    rows = await audit.trail(ctx.db, pk, _before(after), limit)
    return rows[:limit], len(rows) > limit
