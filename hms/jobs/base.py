"""What a job handler receives and how it reaches the database."""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from hms.persistence.database import Database, RequestDb
from hms.settings import Settings


@dataclasses.dataclass
class Services:
    """Long-lived pieces one worker process shares between its jobs."""

    settings: Settings
    #: Tenant-bound work, exactly as requests do it (role, hospital, deadline per transaction).
    database: Database
    #: The owner role, no tenant: only for what the app role may not read (webhook secrets).
    owner: AsyncEngine
    http: httpx.AsyncClient


@dataclasses.dataclass(frozen=True)
class JobInput:
    """One job as a handler sees it: its hospital, the ids it carries, and which try this is
    (0 for the first)."""

    id: int
    queue: str
    hospital_id: uuid.UUID
    body: dict[str, Any]
    attempts: int

    @classmethod
    def parse(cls, job_id: int, queue: str, payload: bytes | None, attempts: int) -> JobInput:
        body = orjson.loads(payload or b"{}")
        return cls(job_id, queue, uuid.UUID(body.pop("hospital")), body, attempts)


#: Runs one job; raising means "try again later" (until the last try, see hms.jobs.worker).
Handler = Callable[[Services, JobInput], Awaitable[None]]
#: Called once a job has failed its last try, to record that where users look (a report's
#: status); gets the failure's exception class name, never its message.
OnDead = Callable[[Services, JobInput, str], Awaitable[None]]


class JobTimeout(Exception):
    """The job ran past its deadline."""


@contextlib.asynccontextmanager
async def tenant(
    services: Services, hospital_id: uuid.UUID, *, readonly: bool = False
) -> AsyncIterator[RequestDb]:
    """A transaction bound to ``hospital_id`` (role ``hms_app``, row-level security, deadline
    ``HMS_JOB_TIMEOUT``) on the primary; committed when the block ends normally (unless
    read-only), rolled back when it raises."""
    db = services.database.request(
        hospital_id,
        readonly=readonly,
        timeout=services.settings.job_timeout,
        replica=False,
    )
    committed = False
    try:
        yield db
        committed = not readonly
    finally:
        await db.close(commit=committed)
