"""Relay global ids and keyset cursors: opaque to clients, checked on the way back in.

A global id is ``base64url("Type:uuid")``. A cursor is ``base64url(json) . base64url(mac)``: the
JSON holds the order it belongs to and the row's sort-key values; the HMAC (keyed per deployment)
makes a tampered or hand-made cursor a clear error instead of a silently wrong page.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import uuid
from typing import Any

import orjson

from hms.persistence.pages import SortKey
from hms.resolvers.errors import BadUserInput

NODE_TYPES = ("Patient", "Practitioner", "Appointment", "Encounter", "Hospital")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


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


def _parse(python_type: type, value: Any) -> Any:
    if python_type is dt.datetime:
        parsed = dt.datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError("naive datetime")
        return parsed
    if python_type is dt.date:
        return dt.date.fromisoformat(value)
    if python_type is uuid.UUID:
        return uuid.UUID(value)
    if not isinstance(value, python_type):
        raise ValueError(value)
    return value


class CursorCodec:
    """Signs and verifies cursors for one order (``scope``, e.g. ``"patients:name:asc"``)."""

    def __init__(self, secret: bytes, scope: str, key: SortKey) -> None:
        self.secret = secret
        self.scope = scope
        self.key = key
        self._types = [c.type.python_type for c in key.columns]

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self.secret, payload, hashlib.sha256).digest()[:12]

    def encode(self, row: Any) -> str:
        values = [getattr(row, name) for name in self.key.names]
        # default=str: asyncpg returns its own UUID type, which orjson does not know.
        payload = orjson.dumps([self.scope, values], default=str)
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def decode(self, cursor: str, argument: str) -> tuple[Any, ...]:
        invalid = BadUserInput(
            f"Invalid cursor in '{argument}': use a cursor returned by this connection "
            "with the same orderBy"
        )
        try:
            body, _, mac = cursor.partition(".")
            payload = _unb64(body)
            if not hmac.compare_digest(self._mac(payload), _unb64(mac)):
                raise invalid
            scope, values = orjson.loads(payload)
            if scope != self.scope or len(values) != len(self._types):
                raise invalid
            return tuple(_parse(t, v) for t, v in zip(self._types, values, strict=True))
        except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
            raise invalid from None
