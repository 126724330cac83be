"""Clinical processing: a patient's visit summary recomputed when an encounter finishes."""

from __future__ import annotations

import uuid

from hms.jobs.base import JobInput, Services, tenant
from hms.persistence import jobs


async def run(services: Services, job: JobInput) -> None:
    async with tenant(services, job.hospital_id) as db:
        await jobs.summarise_visits(db, uuid.UUID(job.body["patient"]))
