"""Idempotency keys: a retried mutation request is answered once, from PostgreSQL.

The key row is written in the mutation's own transaction, so it exists exactly when the
mutation's effects do: a crash before commit leaves neither, and a retry runs afresh. Two
concurrent requests with one key serialise on the primary key: the second waits for the first
to commit, then reads its stored response. Keys older than the TTL are taken over, not reused.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from typing import Any, Literal

from sqlalchemy import ColumnElement, func, literal_column, select
from sqlalchemy.dialects.postgresql import insert

from hms.models.tables import idempotency_key
from hms.persistence.database import RequestDb


@dataclasses.dataclass(frozen=True)
class Claim:
    """``new``: run the request and :func:`store` its answer. ``replay``: answer with the stored
    response. ``mismatch``: the key was used for a different request."""

    outcome: Literal["new", "replay", "mismatch"]
    status: int = 0
    media_type: str = ""
    response: bytes = b""


@functools.cache
def _expired(ttl: dt.timedelta) -> ColumnElement[bool]:
    """Built once per TTL: SQLAlchemy gives ``now()`` (and the interval) a comparator that refers
    back to it as soon as an operator is applied, a cycle per request if built per request."""
    return idempotency_key.c.created_at < func.now() - ttl


async def claim(
    db: RequestDb, subject: str, key: str, fingerprint: bytes, ttl: dt.timedelta
) -> Claim:
    table = idempotency_key
    expired = _expired(ttl)
    stmt: Any = (
        insert(table)
        .values(hospital_id=db.hospital_id, subject=subject, key=key, fingerprint=fingerprint)
        .on_conflict_do_update(
            index_elements=[table.c.hospital_id, table.c.subject, table.c.key],
            set_={
                "fingerprint": fingerprint,
                "status": None,
                "media_type": None,
                "response": None,
                "created_at": func.now(),
            },
            where=expired,
        )
        .returning(literal_column("1"))
    )
    if await db.one_or_none(stmt) is not None:
        return Claim("new")
    row = await db.one_or_none(
        select(table.c.fingerprint, table.c.status, table.c.media_type, table.c.response).where(
            table.c.hospital_id == db.hospital_id,
            table.c.subject == subject,
            table.c.key == key,
        )
    )
    if row is None or row.response is None:  # pragma: no cover - the row committed with us
        raise RuntimeError("idempotency key row vanished after a conflict")
    if bytes(row.fingerprint) != fingerprint:
        return Claim("mismatch")
    return Claim("replay", row.status, row.media_type, bytes(row.response))


async def store(
    db: RequestDb, subject: str, key: str, status: int, media_type: str, response: bytes
) -> None:
    table = idempotency_key
    await db.all(
        table.update()
        .where(
            table.c.hospital_id == db.hospital_id,
            table.c.subject == subject,
            table.c.key == key,
        )
        .values(status=status, media_type=media_type, response=response)
        .returning(table.c.key)
    )
