"""Relay global ids and keyset cursors: opaque to clients, checked on the way back in.

A global id is ``base64url("Type:uuid")``. A cursor is ``base64url("scope:uuid")``: the order it
belongs to (``patients:name:asc``) and the id of the row it points at, nothing else. It carries
no sort-key values, so no names or dates travel in URLs and logs, and it needs no signing key:
the keyset predicate reads the row's sort key by sub-select, under row-level security, so a
cursor pointing at another hospital's row (or no row) finds nothing and is refused. The format
is simple enough for SQL to produce the same bytes (``encode(…, 'base64')`` made URL-safe).
Base64url is written without padding, in both.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Any

from hms.resolvers.errors import BadUserInput

NODE_TYPES = ("Patient", "Practitioner", "Appointment", "Encounter", "Hospital", "Report")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    # validate=True: a character outside the alphabet is an error, not silently skipped.
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def to_global_id(type_name: str, pk: uuid.UUID) -> str:
    return _b64(f"{type_name}:{pk}".encode())


def from_global_id(global_id: str) -> tuple[str, uuid.UUID]:
    """Decode a global id; raises :class:`BadUserInput` when it is not one of ours."""
    try:
        type_name, _, raw = _unb64(global_id).decode("ascii").partition(":")
        if type_name not in NODE_TYPES:
            raise ValueError(type_name)
        return type_name, uuid.UUID(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadUserInput(f"Invalid ID: {global_id[:64]!r} is not a valid object id") from None


def expect_global_id(global_id: str, type_name: str) -> uuid.UUID:
    kind, pk = from_global_id(global_id)
    if kind != type_name:
        raise BadUserInput(f"Invalid ID: expected a {type_name} id, got a {kind} id")
    return pk


def invalid_cursor(argument: str) -> BadUserInput:
    return BadUserInput(
        f"Invalid cursor in '{argument}': use a cursor returned by this connection "
        "with the same orderBy",
        argument=argument,
    )


class CursorCodec:
    """Cursors of one connection order (``scope``, e.g. ``"patients:name:asc"``)."""

    def __init__(self, scope: str) -> None:
        self._prefix = f"{scope}:"

    def encode(self, row: Any) -> str:
        return _b64(f"{self._prefix}{row.id}".encode())

    def decode(self, cursor: str, argument: str) -> uuid.UUID:
        """The id of the row the cursor points at; :class:`BadUserInput` if it is not ours."""
        try:
            text = _unb64(cursor).decode("ascii")
            if not text.startswith(self._prefix):
                raise ValueError("another order")
            raw = text[len(self._prefix) :]
            pk = uuid.UUID(raw)
            if str(pk) != raw:  # one spelling only, the one we (and SQL) write
                raise ValueError("not canonical")
            return pk
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise invalid_cursor(argument) from None


def serial_cursor(prefix: str, serial: int) -> str:
    """The cursor of an append-only row (an audit event, a grant): its number and nothing else."""
    return _b64(f"{prefix}{serial}".encode())


def serial_after(prefix: str, after: str | None) -> int | None:
    """The number in a :func:`serial_cursor` of ``prefix``; a bad cursor is refused."""
    if after is None:
        return None
    try:
        text = _unb64(after).decode("ascii")
        if not text.startswith(prefix) or not text[len(prefix) :].isdigit():
            raise ValueError(text)
        return int(text[len(prefix) :])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid_cursor("after") from None
