"""One record per GraphQL request: its metrics and its one access-log line.

The pipeline fills a :class:`Seen` as the request goes (who, which operation, how it ended,
what it cost, how many statements it ran) and :meth:`Seen.done` turns it into samples and a
structured line on the ``hms.access`` logger. What it holds is chosen to be PHI-free: the
operation's name (a client-chosen identifier, bounded), codes, counts, durations, the user's
id (the token's subject) and hospital id; never variables, documents, values or messages.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import re
import time
import uuid
from typing import Any

from hms.observability.metrics import Metrics

log = logging.getLogger("hms.access")

#: Distinct operation names a process labels its samples with; later ones are "other".
MAX_NAMES = 200
_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]{0,63}")
_named: set[str] = set()


def operation_label(name: str | None) -> str:
    """``name`` as a metric label: anonymous operations are ``-``; past :data:`MAX_NAMES`
    distinct names (or an odd one) it is ``other``, so no client can grow the label set."""
    if name is None:
        return "-"
    if name in _named:
        return name
    if len(_named) >= MAX_NAMES or not _NAME.fullmatch(name):
        return "other"
    _named.add(name)
    return name


@dataclasses.dataclass
class Seen:
    started: float = dataclasses.field(default_factory=time.perf_counter)
    operation_type: str = "-"
    operation_name: str | None = None
    document_id: str | None = None
    path: str | None = None  # compiled, interpreted
    user: str | None = None
    hospital: uuid.UUID | None = None
    client: str | None = None
    statements: int = 0
    cost_estimated: float | None = None
    cost_actual: float | None = None
    trace_id: str | None = None
    errors: list[str] = dataclasses.field(default_factory=list)

    def done(self, metrics: Metrics, status: int, outcome: str) -> None:
        elapsed = time.perf_counter() - self.started
        name = operation_label(self.operation_name)
        metrics.requests.labels(self.operation_type, name, outcome).observe(elapsed)
        for code in self.errors:
            metrics.errors.labels(code).inc()
        if self.path is not None:
            metrics.statements.labels(self.path).observe(self.statements)
        if self.cost_estimated is not None:
            metrics.cost.labels("estimated").observe(self.cost_estimated)
        if self.cost_actual is not None:
            metrics.cost.labels("actual").observe(self.cost_actual)
        if log.isEnabledFor(logging.INFO):
            fields: dict[str, Any] = {
                "operation": name,
                "type": self.operation_type,
                "status": status,
                "outcome": outcome,
                "duration_ms": round(elapsed * 1000, 2),
                "path": self.path,
                "sql": self.statements,
                "cost": self.cost_actual,
                "user": self.user,
                "hospital": None if self.hospital is None else str(self.hospital),
                "client": self.client,
                "document": self.document_id,
                "errors": sorted(set(self.errors)) or None,
                "trace_id": self.trace_id,
            }
            log.info("request", extra={"fields": fields})


#: The running request's record (None outside a request).
SEEN: contextvars.ContextVar[Seen | None] = contextvars.ContextVar("hms_seen", default=None)
