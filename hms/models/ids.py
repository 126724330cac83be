"""Time-ordered UUIDv7 ids, generated in Python so PostgreSQL 15 (no ``uuidv7()``) works too.

Time ordering keeps new rows at the right edge of the primary-key B-tree, which matters for bulk
loads and for insert-heavy tables.
"""

from __future__ import annotations

import os
import time
import uuid


def uuid7(timestamp_ms: int | None = None) -> uuid.UUID:
    """An RFC 9562 version-7 UUID: 48-bit Unix milliseconds, then 74 random bits."""
    ms = time.time_ns() // 1_000_000 if timestamp_ms is None else timestamp_ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)  # rand_b, 62 bits
    return uuid.UUID(int=value)
