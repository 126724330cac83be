"""``hms worker``: take jobs from the queue and run them, until told to stop.

Each queue's jobs go to its handler through :class:`Executor`, which decides what a failure
means: another try later (``HMS_JOB_RETRY_BASE_SECONDS * 2**tries``, capped, with jitter), or,
after ``HMS_JOB_MAX_ATTEMPTS`` tries, a dead letter (PgQueuer holds the job with status
``failed`` until ``hms jobs retry``). Failures are recorded by exception class only: a message
may hold PHI, and PgQueuer logs and stores what it is given.

On SIGTERM the worker takes no new jobs and gives running ones ``HMS_SHUTDOWN_TIMEOUT``
seconds; those still running then are cancelled and put back in the queue at once (released),
so no job waits for a dead worker's heartbeat to go stale. A worker killed outright leaves its
jobs ``picked``; another takes them ``HMS_JOB_HEARTBEAT_TIMEOUT`` seconds after its last beat.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import random
import time
from collections.abc import Callable

import asyncpg
import httpx
from pgqueuer.adapters.drivers.asyncpg import AsyncpgPoolDriver
from pgqueuer.adapters.persistence.queries import Queries
from pgqueuer.core.executors import AbstractEntrypointExecutor, EntrypointExecutorParameters
from pgqueuer.core.qm import QueueManager
from pgqueuer.domain import errors, models
from prometheus_client import CollectorRegistry, start_http_server

from hms.jobs import clinical, reminders, reports, retention
from hms.jobs.base import Handler, JobInput, OnDead, Services
from hms.jobs.metrics import QUEUE_SAMPLE, WorkerMetrics
from hms.jobs.notify import DeliveryFailed
from hms.persistence.database import Database, side_engine
from hms.persistence.jobs import QUEUES
from hms.persistence.urls import asyncpg_dsn
from hms.settings import Settings

log = logging.getLogger("hms.worker")

#: How often the queue gauges are sampled.
SAMPLE_SECONDS = 5.0


class JobFailed(Exception):
    """A job failed its last try; the message names the cause's class only."""


def backoff(tries: int, base: float, cap: float) -> dt.timedelta:
    """Delay before the next try after ``tries`` failed ones (1 or more): exponential, capped,
    the upper half random ("equal jitter") so jobs that failed together do not retry together."""
    ceiling = min(cap, base * 2 ** (tries - 1))
    return dt.timedelta(seconds=ceiling / 2 + random.uniform(0, ceiling / 2))


def _describe(error: BaseException) -> str:
    # A delivery failure's message is ours and holds no PHI (a status code, a transport error's
    # class); any other message might.
    name = type(error).__name__
    return f"{name}: {error}" if isinstance(error, DeliveryFailed) else name


def handlers() -> dict[str, tuple[Handler, OnDead | None]]:
    """Queue name -> (handler, what to do when its job dies)."""
    return {
        "reminders": (reminders.run, None),
        "clinical": (clinical.run, None),
        "reports": (reports.run, reports.failed),
    }


@dataclasses.dataclass
class Executor(AbstractEntrypointExecutor):
    services: Services
    handler: Handler
    on_dead: OnDead | None
    metrics: WorkerMetrics
    releasing: asyncio.Event

    async def execute(self, job: models.Job, context: models.Context) -> None:
        settings = self.services.settings
        queue = str(job.entrypoint)
        item = JobInput.parse(int(job.id), queue, job.payload, job.attempts)
        running = self.metrics.running.labels(queue)
        running.inc()
        started = time.perf_counter()
        work = asyncio.ensure_future(self.handler(self.services, item))
        release = asyncio.ensure_future(self.releasing.wait())
        try:
            await asyncio.wait({work, release}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            work.cancel()
            raise
        finally:
            release.cancel()
            running.dec()
            self.metrics.duration.labels(queue).observe(time.perf_counter() - started)
        if not work.done():
            work.cancel()
            with contextlib.suppress(BaseException):
                await work
            self.metrics.finished.labels(queue, "released").inc()
            log.info("job %s (%s) released at shutdown", job.id, queue)
            raise errors.RetryRequested(delay=dt.timedelta(0), reason="released at shutdown")
        error = work.exception()
        if error is None:
            self.metrics.finished.labels(queue, "succeeded").inc()
            return
        cause = _describe(error)
        tries = job.attempts + 1
        if tries >= settings.job_max_attempts:
            self.metrics.finished.labels(queue, "dead").inc()
            log.warning("job %s (%s) failed its last try (%d): %s", job.id, queue, tries, cause)
            if self.on_dead is not None:
                try:
                    await self.on_dead(self.services, item, type(error).__name__)
                except Exception as dead_error:
                    log.warning(
                        "recording job %s's failure failed: %s", job.id, _describe(dead_error)
                    )
            raise JobFailed(cause) from None
        delay = backoff(tries, settings.job_retry_base, settings.job_retry_max)
        self.metrics.finished.labels(queue, "retried").inc()
        log.info(
            "job %s (%s) try %d failed: %s; next in %.1f s",
            job.id,
            queue,
            tries,
            cause,
            delay.total_seconds(),
        )
        raise errors.RetryRequested(delay=delay, reason=cause) from None


async def _run_by_executor(job: models.Job) -> None:
    """PgQueuer's parameters name a function; :class:`Executor` calls the handler itself."""
    raise AssertionError("jobs run through Executor.execute")


async def _sample(pool: asyncpg.Pool, metrics: WorkerMetrics, every: float) -> None:
    while True:
        try:
            metrics.sampled(await pool.fetch(QUEUE_SAMPLE))
        except Exception:  # the queue's gauges keep their last values; the job loop reports
            metrics.sample_failures.inc()
        await asyncio.sleep(every)


async def run(
    settings: Settings,
    stop: asyncio.Event,
    *,
    registry: CollectorRegistry | None = None,
    ready: Callable[[], None] | None = None,
) -> None:
    """Run jobs until ``stop`` is set (then shut down gracefully) or the queue fails."""
    assert settings.database_url is not None
    pooled = settings.database_pooler != "none"
    # The queue LISTENs, so it needs a session of its own: past a transaction pooler, the
    # direct URL (HMS_DATABASE_LISTEN_URL).
    queue_url = settings.database_listen_url or settings.database_url
    pool = await asyncpg.create_pool(
        asyncpg_dsn(queue_url),
        min_size=2,
        max_size=4,
        server_settings={"application_name": "hms-worker"},
        **({"statement_cache_size": 0} if pooled and settings.database_listen_url is None else {}),
    )
    slots = sum(settings.job_concurrency.values())
    # Jobs read and write on the primary only (``tenant``): no replica engines or checks.
    database = Database.from_settings(
        settings.with_(db_pool_size=slots, db_max_overflow=0, database_replica_urls=())
    )
    owner = side_engine(settings.database_url, "hms-worker-owner", pooled=pooled)
    http = httpx.AsyncClient(timeout=httpx.Timeout(10.0), follow_redirects=False)
    services = Services(settings, database, owner, http)
    metrics = WorkerMetrics([q.name for q in QUEUES], registry)
    server = None
    if settings.worker_metrics_port:
        server, _thread = start_http_server(
            settings.worker_metrics_port, addr=settings.host, registry=metrics.registry
        )
    qm = QueueManager(Queries(AsyncpgPoolDriver(pool)))
    releasing = asyncio.Event()
    for queue in QUEUES:
        handler, on_dead = handlers()[queue.name]
        params = EntrypointExecutorParameters(
            concurrency_limit=settings.job_concurrency[queue.name],
            func=_run_by_executor,
            on_failure="hold",
        )
        qm.register_executor(
            queue.name, Executor(params, services, handler, on_dead, metrics, releasing)
        )
    cap = settings.worker_concurrency
    # A finished job frees its queue's slot only when PgQueuer writes its outcome, which it
    # batches by this size (also the dequeue batch) or every 0.1 s. A batch as large as the
    # queue's limit makes it wait on that timer between rounds; half of it lets the other half
    # run while the first half's slots are freed. bench/jobs.py, 1000 jobs, limit 8, jobs/s
    # reminders/clinical: batch 10: 53/53, 8: 142/226, 4: 179-181/243-290, 2: 116/206, 1: 114/186.
    batch = max(1, max(settings.job_concurrency.values()) // 2)
    if cap:
        batch = min(batch, cap // 2)
    sampler = asyncio.create_task(_sample(pool, metrics, SAMPLE_SECONDS))
    sweeper = asyncio.create_task(retention.sweep_periodically(services))
    try:
        await qm.verify_structure()
        running = asyncio.create_task(
            qm.run(
                dequeue_timeout=dt.timedelta(seconds=settings.job_poll_seconds),
                batch_size=batch,
                max_concurrent_tasks=cap or None,
                heartbeat_timeout=dt.timedelta(seconds=settings.job_heartbeat_timeout),
            )
        )
        stopping = asyncio.create_task(stop.wait())
        log.info("worker ready: queues %s", ", ".join(q.name for q in QUEUES))
        if ready is not None:
            ready()
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not running.done():
            log.info("worker stopping: finishing running jobs")
            qm.shutdown.set()
            await asyncio.wait({running}, timeout=settings.shutdown_timeout)
        if not running.done():
            releasing.set()
            await asyncio.wait({running}, timeout=10)
        if not running.done():
            running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running  # raises what stopped the queue loop, if it was not us
    finally:
        for task in (sampler, sweeper):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if server is not None:
            server.shutdown()
        await http.aclose()
        await owner.dispose()
        await database.dispose()
        await pool.close()
        log.info("worker stopped")
