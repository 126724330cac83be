"""Time-ordered UUIDv7 ids, generated in Python so PostgreSQL 15 (no ``uuidv7()``) works too.

Time ordering keeps new rows at the right edge of the primary-key B-tree, which matters for bulk
loads and for insert-heavy tables.
"""

from __future__ import annotations

import os
import time
import uuid


def uuid7_int(ms: int, rand: int) -> int:
    """The RFC 9562 version-7 layout: 48-bit Unix milliseconds, version, 74 bits of ``rand``,
    variant. Split out so the seed generator can supply reproducible random bits."""
    value = (ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)  # rand_b, 62 bits
    return value


def uuid7(timestamp_ms: int | None = None) -> uuid.UUID:
    """A version-7 UUID for now (or ``timestamp_ms``) with 74 random bits from the OS."""
    ms = time.time_ns() // 1_000_000 if timestamp_ms is None else timestamp_ms
    return uuid.UUID(int=uuid7_int(ms, int.from_bytes(os.urandom(10), "big")))
