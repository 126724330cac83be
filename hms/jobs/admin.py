"""``hms jobs list|stats|retry``: what is in the queue, and putting dead letters back.

Run as the owner role on the queue's own tables. Nothing printed holds PHI: a job carries its
hospital and ids only, and a failure is recorded by exception class.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from pgqueuer.adapters.persistence.queries import Queries
from pgqueuer.domain.types import JobId

from hms.jobs.metrics import QUEUE_SAMPLE, queue_depth
from hms.persistence.jobs import QUEUES

STATUSES = ("queued", "picked", "failed")

_LIST = """
SELECT j.id, j.entrypoint AS queue, j.status::text AS status, j.priority, j.attempts,
       j.created, j.execute_after,
       convert_from(j.payload, 'UTF8')::jsonb ->> 'hospital' AS hospital,
       (SELECT l.traceback ->> 'exception_message' FROM pgqueuer_log l
        WHERE l.job_id = j.id AND l.traceback IS NOT NULL
        ORDER BY l.created DESC LIMIT 1) AS last_error
FROM pgqueuer j
WHERE ($1::text IS NULL OR j.status::text = $1) AND ($2::text IS NULL OR j.entrypoint = $2)
ORDER BY j.priority DESC, j.id
LIMIT $3
"""

_DONE = """
SELECT entrypoint, status::text AS status, count(*) AS jobs
FROM pgqueuer_log
WHERE created > now() - make_interval(secs => $1) AND status IN ('successful', 'exception',
      'failed', 'canceled')
GROUP BY 1, 2
"""


async def listing(
    conn: asyncpg.Connection, status: str | None, queue: str | None, limit: int
) -> list[Any]:
    return list(await conn.fetch(_LIST, status, queue, limit))


async def stats(conn: asyncpg.Connection, window_seconds: float = 3600.0) -> list[dict[str, Any]]:
    """Per queue: due, scheduled, running and dead jobs, the oldest due job's wait, and the
    tries that ended in the last ``window_seconds`` by outcome."""
    depth = queue_depth(await conn.fetch(QUEUE_SAMPLE), [q.name for q in QUEUES])
    table: dict[str, dict[str, Any]] = {
        q.name: {
            "queue": q.name,
            "priority": q.priority,
            "waiting": sum(depth[q.name].waiting.values()),
            "scheduled": depth[q.name].scheduled,
            "running": depth[q.name].running,
            "dead": depth[q.name].dead,
            "oldest_wait_s": round(depth[q.name].oldest_wait, 1),
            "succeeded": 0,
            "failed": 0,
            "cancelled": 0,
        }
        for q in QUEUES
    }
    outcome = {
        "successful": "succeeded",
        "exception": "failed",
        "failed": "failed",
        "canceled": "cancelled",
    }
    for row in await conn.fetch(_DONE, window_seconds):
        entry = table.get(row["entrypoint"])
        if entry is not None:
            entry[outcome[row["status"]]] += row["jobs"]
    return list(table.values())


async def retry(conn: asyncpg.Connection, job_ids: list[int]) -> tuple[list[int], list[int]]:
    """Put dead letters back in their queue as new (their tries start again); returns the ids
    requeued and those that were not dead letters (missing, waiting or running)."""
    async with conn.transaction():
        dead = {
            row["id"]
            for row in await conn.fetch(
                "SELECT id FROM pgqueuer WHERE id = ANY($1::bigint[]) AND status = 'failed'"
                " FOR UPDATE",
                job_ids,
            )
        }
        await Queries.from_asyncpg_connection(conn).requeue_jobs([JobId(i) for i in dead])
    return sorted(dead), [i for i in job_ids if i not in dead]
