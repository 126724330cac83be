"""Scalars whose input rules are stricter than strawberry's defaults.

``DateTime`` is RFC 3339 with a UTC offset (DESIGN §5), and only instants that exist in UTC:
``0001-01-01T00:00:00+14:00`` is a valid ISO string, but it lies before year 1 in UTC, and the
driver would fail on it with an internal error. It is refused at the boundary instead, naming the
argument, before any resolver runs.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import strawberry


def parse_datetime(value: Any) -> dt.datetime:
    if not isinstance(value, str):
        raise ValueError("DateTime must be a string like 2027-03-01T09:00:00+01:00")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("DateTime must be RFC 3339, like 2027-03-01T09:00:00+01:00") from None
    if parsed.utcoffset() is None:
        raise ValueError("DateTime needs a UTC offset (RFC 3339), like +00:00 or Z")
    try:
        parsed.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError(
            "DateTime is outside the supported range (years 1 to 9999 in UTC)"
        ) from None
    return parsed


DateTime = strawberry.scalar(
    name="DateTime",
    description="An instant: RFC 3339 date and time with a UTC offset.",
    serialize=dt.datetime.isoformat,
    parse_value=parse_datetime,
)

#: For ``StrawberryConfig(scalar_map=...)``.
SCALARS: dict[object, Any] = {dt.datetime: DateTime}
