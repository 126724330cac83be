"""W3C Trace Context: the trace a request belongs to, as its caller propagated it.

A caller that traces (a browser with OpenTelemetry, a gateway, another service) sends
``traceparent: 00-<trace id>-<parent span id>-<flags>``. Its trace id is written into the
request's audit event, so an auditor can follow an access to the caller's own traces and logs.
A malformed header is ignored (the W3C rule), never an error.
"""

from __future__ import annotations

import re

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


def trace_id(traceparent: str | None) -> str | None:
    """The trace id of a valid ``traceparent`` header, else None."""
    if traceparent is None or len(traceparent) > 512:
        return None
    found = _TRACEPARENT.fullmatch(traceparent.strip())
    if found is None:
        return None
    version, trace, span, _flags, rest = found.groups()
    if version == "ff" or trace == _ZERO_TRACE or span == _ZERO_SPAN:
        return None
    if version == "00" and rest:  # version 00 has exactly four fields
        return None
    return trace
