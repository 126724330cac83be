"""Log lines about failures that can never carry PHI.

An exception's message is data: a driver error quotes the row that violated a constraint
(``Key (mrn)=(A00042) already exists``), a coercion error quotes the input. So an unexpected
error is logged by its class, SQLSTATE and traceback *frames* (file, line, function, source
line: code, not data), never by ``str(error)`` or its arguments, for itself and every exception
chained to it.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any


def _sqlstate(error: BaseException) -> str | None:
    for candidate in (error, getattr(error, "orig", None)):
        state = getattr(candidate, "sqlstate", None)
        if isinstance(state, str):
            return state
    return None


def describe(error: BaseException) -> str:
    """Class names, SQLSTATEs and frames of ``error`` and its chain; no messages."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        kind = type(current)
        head = f"{kind.__module__}.{kind.__qualname__}"
        state = _sqlstate(current)
        if state is not None:
            head += f" (SQLSTATE {state})"
        frames = traceback.extract_tb(current.__traceback__)
        body = "".join(
            f"\n  File {f.filename}:{f.lineno} in {f.name}" + (f"\n    {f.line}" if f.line else "")
            for f in frames
        )
        parts.append(head + body)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    return "\ncaused by ".join(parts)


def log_failure(logger: logging.Logger, what: str, error: BaseException, **fields: Any) -> None:
    """Log an unexpected ``error`` at ERROR without its message; ``fields`` must be PHI-free."""
    context = " ".join(f"{key}={value}" for key, value in fields.items())
    logger.error("%s %s\n%s", what, context, describe(error))
