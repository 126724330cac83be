"""Reports: a CSV export of the hospital's appointments or encounters over a time range.

``requestReport`` stores a queued report and enqueues its job in one savepoint, so a request
that rolls back leaves neither; the job (:mod:`hms.jobs.reports`) writes the CSV with
:func:`render`; ``GET /reports/<id>.csv`` (:mod:`hms.http.reports`) serves it with
:func:`download`, audited with the patients :func:`patients_in` finds in it. Who may do
each is the schema's and the HTTP layer's business (:data:`hms.security.policy.REPORTERS`).

The CSV lists who and when, never why (no reasons) or how to reach anyone (no contact data):
ids as the API's global ids, codes as the API's enum names, instants as the API writes them.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import datetime as dt
import io
import uuid
from collections.abc import AsyncIterable, Sequence
from typing import Any

from hms.context import Context
from hms.persistence import reports
from hms.persistence.database import RequestDb
from hms.resolvers.errors import BadUserInput
from hms.resolvers.fields import enum_name
from hms.resolvers.outcomes import Outcome, atomic
from hms.resolvers.relay import expect_global_id, from_global_id, to_global_id
from hms.resolvers.validation import Checks

#: The longest range one report covers: a year, leap day included.
MAX_DAYS = 366

#: The object type of each kind's rows (their ids are global ids of it).
ROW_TYPES = {"appointments": "Appointment", "encounters": "Encounter"}
#: The header row of each kind.
HEADERS = {
    "appointments": (
        "id",
        "patientId",
        "mrn",
        "familyName",
        "givenName",
        "practitioner",
        "status",
        "startAt",
        "endAt",
    ),
    "encounters": (
        "id",
        "patientId",
        "mrn",
        "familyName",
        "givenName",
        "practitioner",
        "class",
        "status",
        "periodStart",
        "periodEnd",
    ),
}
PATIENT_COLUMN = "patientId"

#: A cell starting with one of these is a formula to a spreadsheet (CSV injection): text
#: people typed (names) gets a leading apostrophe, which spreadsheets show as text.
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


async def request_report(
    ctx: Context, *, kind: str, start: dt.datetime, end: dt.datetime
) -> Outcome:
    checks = Checks()
    if end <= start:
        checks.fail("to", "Must be later than 'from'")
    elif end - start > dt.timedelta(days=MAX_DAYS):
        checks.fail("to", f"A report covers at most {MAX_DAYS} days")
    if checks.problems:
        return Outcome.failed(*checks.problems)

    async def queued() -> Any:
        row = await reports.create(
            ctx.db, kind=kind, start=start, end=end, requested_by=ctx.principal.subject
        )
        await reports.queue(ctx.db, row.id)
        return row

    return await atomic(ctx, queued, id_fields={})


async def report(ctx: Context, global_id: str) -> Any:
    """The report, or None when missing or another hospital's (row-level security)."""
    return await ctx.loaders.report_by_id.load(expect_global_id(global_id, "Report"))


def download_url(row: Any) -> str | None:
    """Where a ready report is downloaded (with the same bearer token)."""
    if row.status != "ready":
        return None
    return f"/reports/{to_global_id('Report', row.id)}.csv"


def _text(value: str | None) -> str:
    if not value:
        return ""
    return "'" + value if value.startswith(_FORMULA) else value


def _instant(value: dt.datetime | None) -> str:
    return "" if value is None else value.astimezone(dt.UTC).isoformat()


def _cells(kind: str, row: Any) -> list[str]:
    practitioner = " ".join(
        part for part in (row.practitioner_given_name, row.practitioner_family_name) if part
    )
    cells = [
        to_global_id(ROW_TYPES[kind], row.id),
        to_global_id("Patient", row.patient_id),
        _text(row.mrn),
        _text(row.family_name),
        _text(row.given_name),
        _text(practitioner),
    ]
    if kind == "encounters":
        cells.append(enum_name(row.class_))
    cells += [enum_name(row.status), _instant(row.start_at), _instant(row.end_at)]
    return cells


@dataclasses.dataclass(frozen=True)
class Rendered:
    """A report's CSV (UTF-8, RFC 4180 line ends, a header row), its row count, and the
    patients it names (whom each download discloses)."""

    content: bytes
    rows: int
    patients: frozenset[uuid.UUID]


async def render(kind: str, pages: AsyncIterable[Sequence[Any]]) -> Rendered:
    """The CSV of ``pages`` of a ``kind`` report's rows; each page is written as it comes and
    then dropped."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(HEADERS[kind])
    count = 0
    patients: set[uuid.UUID] = set()
    async for page in pages:
        writer.writerows(_cells(kind, row) for row in page)
        patients.update(row.patient_id for row in page)
        count += len(page)
    return Rendered(text.getvalue().encode(), count, frozenset(patients))


def patients_in(content: bytes) -> frozenset[uuid.UUID]:
    """The patients a report's CSV holds data of (read from the CSV itself: exactly who a
    download discloses)."""
    rows = csv.reader(io.StringIO(content.decode()))
    column = next(rows).index(PATIENT_COLUMN)
    named = {row[column] for row in rows}
    return frozenset(from_global_id(global_id)[1] for global_id in named)


@dataclasses.dataclass(frozen=True)
class Download:
    filename: str
    content: bytes
    patients: frozenset[uuid.UUID]


async def ready_report(db: RequestDb, global_id: str) -> Any | None:
    """A ready report with its content; None for a malformed id or a report that is missing,
    another hospital's or not ready (one answer: no existence leak)."""
    try:
        pk = expect_global_id(global_id, "Report")
    except BadUserInput:
        return None
    return await reports.ready(db, pk)


async def download(row: Any) -> Download:
    """What a download of the ready report ``row`` sends, and whose data that is."""
    content = bytes(row.content)
    if row.patient_ids is not None:
        patients = frozenset(row.patient_ids)
    else:  # written before its patients were stored with it: read them from the CSV
        patients = await asyncio.to_thread(patients_in, content)
    dates = f"{row.range_start:%Y%m%d}-{row.range_end:%Y%m%d}"
    return Download(f"{row.kind}-{dates}.csv", content, patients)
