"""Reports: the CSV a user asked for (``requestReport``), written by a low-priority job.

Three tenant transactions, each committed on its own: the report is marked running (so its
status says so while it is written), its rows are read in keyset pages inside one read-only
snapshot (the CSV is the schedule as of one instant, however long the read), and the content
is stored with its row count and marked ready. The queue delivers at least once: a report
that is ready already is left as it is, and a try that finds it running (an earlier try died)
writes it afresh.
"""

from __future__ import annotations

import uuid

from hms.jobs.base import JobInput, Services, tenant
from hms.persistence import reports
from hms.resolvers.reports import render


def _report(job: JobInput) -> uuid.UUID:
    return uuid.UUID(job.body["report"])


async def run(services: Services, job: JobInput) -> None:
    report_id = _report(job)
    async with tenant(services, job.hospital_id) as db:
        row = await reports.start(db, report_id)
    if row is None:
        return  # ready already (a repeated delivery), or not this hospital's
    async with tenant(services, job.hospital_id, readonly=True) as db:
        pages = reports.listed(db, row.kind, row.range_start, row.range_end)
        rendered = await render(row.kind, pages)
    async with tenant(services, job.hospital_id) as db:
        await reports.finish(db, report_id, rendered)


async def failed(services: Services, job: JobInput, cause: str) -> None:
    """The job failed its last try: the report says so, with ``cause`` (an exception's class
    name, never its message), until someone retries the job."""
    async with tenant(services, job.hospital_id) as db:
        await reports.fail(db, _report(job), cause)
