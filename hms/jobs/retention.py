"""Reports are kept ``HMS_REPORT_RETENTION_DAYS`` days after they were asked for (0: for ever).

A report holds names and MRNs; it is made to be downloaded, not to be a second copy of the
records. Each worker sweeps every hospital once an hour, in a transaction bound to that
hospital as a request's would be (several workers sweeping at once delete nothing twice).
"""

from __future__ import annotations

import asyncio
import logging

from hms.jobs.base import Services, tenant
from hms.persistence import hospitals, reports

log = logging.getLogger("hms.worker")

#: How often a worker sweeps.
SWEEP_SECONDS = 3600.0


async def sweep(services: Services) -> int:
    """Delete every hospital's expired reports; how many went."""
    days = services.settings.report_retention_days
    if days == 0:
        return 0
    removed = 0
    for hospital in await hospitals.all_as_owner(services.owner):
        async with tenant(services, hospital.id) as db:
            removed += await reports.expire(db, days)
    return removed


async def sweep_periodically(services: Services, every: float = SWEEP_SECONDS) -> None:
    while True:
        try:
            removed = await sweep(services)
        except Exception as error:  # the next sweep tries again; the class says enough
            log.warning("expiring reports failed: %s", type(error).__name__)
        else:
            if removed:
                log.info(
                    "expired %d reports older than %d days",
                    removed,
                    services.settings.report_retention_days,
                )
        await asyncio.sleep(every)
