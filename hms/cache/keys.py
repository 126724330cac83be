"""Every cache key the platform uses, in one place (and so one naming scheme).

Keys are versioned: a change of what a key holds changes its version, so a rolling deploy never
reads a value written in the old shape.
"""

from __future__ import annotations

from urllib.parse import quote


def apq_document(digest: str) -> str:
    """A document registered by automatic persisted queries (any client in ``open``/``apq``)."""
    return f"v1:doc:apq:{digest}"


def trusted_document(digest: str) -> str:
    """The hot copy of a registry document (``hms documents push``)."""
    return f"v1:doc:trusted:{digest}"


def apq_registrations(subject: str, hospital: str) -> str:
    """How many documents one caller registered in the current minute."""
    return f"v1:apq-rate:{hospital}:{subject}"


def caller_budget(hospital: str, subject: str, client: str | None) -> str:
    """The cost budget of one caller using one client application (hms.limits.budget).

    ``client`` must come from the token, never from a header: a caller who could name the
    client would get a fresh budget per name. Parts are escaped so no two callers share a key.
    """
    return f"v1:budget:caller:{hospital}:{quote(subject, safe='')}:{quote(client or '', safe='')}"


def hospital_budget(hospital: str) -> str:
    """The cost budget of a whole hospital, shared by all its callers."""
    return f"v1:budget:hospital:{hospital}"


def written(hospital: str, subject: str) -> str:
    """The primary's WAL position after a user's last write (read-your-writes on replicas)."""
    return f"v1:written:{hospital}:{quote(subject, safe='')}"
