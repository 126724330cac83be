"""Every cache key the platform uses, in one place (and so one naming scheme).

Keys are versioned: a change of what a key holds changes its version, so a rolling deploy never
reads a value written in the old shape.
"""

from __future__ import annotations


def apq_document(digest: str) -> str:
    """A document registered by automatic persisted queries (any client in ``open``/``apq``)."""
    return f"v1:doc:apq:{digest}"


def trusted_document(digest: str) -> str:
    """The hot copy of a registry document (``hms documents push``)."""
    return f"v1:doc:trusted:{digest}"


def apq_registrations(subject: str, hospital: str) -> str:
    """How many documents one caller registered in the current minute."""
    return f"v1:apq-rate:{hospital}:{subject}"
