"""The caller's W3C trace id: taken when valid, ignored (never an error) otherwise."""

from __future__ import annotations

import pytest

from hms.observability.trace import trace_id

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"00-{TRACE}-{SPAN}-01", TRACE),
        (f"00-{TRACE}-{SPAN}-00", TRACE),
        (f" 00-{TRACE}-{SPAN}-01 ", TRACE),
        (f"cc-{TRACE}-{SPAN}-01-what-the-future-adds", TRACE),  # a later version may add fields
        (f"00-{TRACE}-{SPAN}-01-extra", None),  # version 00 has exactly four
        (f"ff-{TRACE}-{SPAN}-01", None),  # the forbidden version
        (f"00-{'0' * 32}-{SPAN}-01", None),  # all-zero trace id
        (f"00-{TRACE}-{'0' * 16}-01", None),  # all-zero parent id
        (f"00-{TRACE.upper()}-{SPAN}-01", None),  # lowercase hex only
        (f"00-{TRACE[:-1]}-{SPAN}-01", None),
        ("", None),
        (None, None),
        (f"00-{TRACE}-{SPAN}-01-" + "x" * 600, None),  # bounded
    ],
)
def test_traceparent(header: str | None, expected: str | None) -> None:
    assert trace_id(header) == expected
