"""The worker's Prometheus metrics, served on ``HMS_WORKER_METRICS_PORT``.

What each worker did (jobs finished by outcome, how long they ran) is counted as it happens; what
the queue holds (jobs waiting per queue and priority, the age of the oldest one, dead letters) is
sampled from PostgreSQL every few seconds, so every worker reports the same queue and any one of
them is enough to alert on. Labels are queue names, priorities and outcomes: a few dozen series.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: How a job's try ended: done, tried again later, failed for good (held as a dead letter),
#: given back at shutdown.
OUTCOMES = ("succeeded", "retried", "dead", "released")
DURATIONS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

#: One statement, grouped by queue, priority and status; ``due`` separates jobs waiting to run
#: from those scheduled later (a reminder for next week is not a backlog).
QUEUE_SAMPLE = """
SELECT entrypoint, priority, status::text AS status,
       (status = 'queued' AND execute_after <= now()) AS due,
       count(*) AS jobs,
       coalesce(extract(epoch FROM now() - min(execute_after)), 0) AS oldest
FROM pgqueuer
GROUP BY 1, 2, 3, 4
"""


@dataclasses.dataclass
class Depth:
    """What one queue holds: jobs due and not taken (by priority), waiting for a later time,
    taken by a worker, held as dead letters; and how long the oldest due job has waited."""

    waiting: dict[int, int] = dataclasses.field(default_factory=dict)
    scheduled: int = 0
    running: int = 0
    dead: int = 0
    oldest_wait: float = 0.0


def queue_depth(rows: Iterable[Any], queues: Iterable[str]) -> dict[str, Depth]:
    """Each of ``queues`` from one :data:`QUEUE_SAMPLE` result (other entrypoints are left
    out): for the gauges and for ``hms jobs stats``."""
    depth = {queue: Depth() for queue in queues}
    for row in rows:
        found = depth.get(row["entrypoint"])
        if found is None:
            continue
        if row["status"] == "queued" and row["due"]:
            found.waiting[row["priority"]] = found.waiting.get(row["priority"], 0) + row["jobs"]
            found.oldest_wait = max(found.oldest_wait, float(row["oldest"]))
        elif row["status"] == "queued":
            found.scheduled += row["jobs"]
        elif row["status"] == "picked":
            found.running += row["jobs"]
        elif row["status"] == "failed":
            found.dead += row["jobs"]
    return depth


class WorkerMetrics:
    def __init__(self, queues: list[str], registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.queues = queues
        r = self.registry
        self.finished = Counter(
            "hms_jobs_finished_total",
            "Tries of jobs this worker ended, by queue and outcome",
            ["queue", "outcome"],
            registry=r,
        )
        self.duration = Histogram(
            "hms_job_duration_seconds",
            "How long one try of a job ran",
            ["queue"],
            buckets=DURATIONS,
            registry=r,
        )
        self.running = Gauge(
            "hms_jobs_running", "Jobs this worker is running now", ["queue"], registry=r
        )
        self.waiting = Gauge(
            "hms_jobs_waiting",
            "Jobs due to run and not yet taken, by queue and priority",
            ["queue", "priority"],
            registry=r,
        )
        self.scheduled = Gauge(
            "hms_jobs_scheduled",
            "Jobs waiting for a later time (reminders, retries after backoff)",
            ["queue"],
            registry=r,
        )
        self.picked = Gauge(
            "hms_jobs_in_progress",
            "Jobs taken by some worker and not yet finished",
            ["queue"],
            registry=r,
        )
        self.oldest = Gauge(
            "hms_jobs_oldest_waiting_seconds",
            "How long the oldest due job of the queue has been waiting (0 when none)",
            ["queue"],
            registry=r,
        )
        self.dead = Gauge(
            "hms_jobs_dead_letters",
            "Jobs that failed their last try and wait for 'hms jobs retry'",
            ["queue"],
            registry=r,
        )
        self.sample_failures = Counter(
            "hms_jobs_sample_failures_total",
            "Failed reads of the queue's state (the gauges then keep their last values)",
            registry=r,
        )
        for queue in queues:
            self.oldest.labels(queue).set(0)
            self.dead.labels(queue).set(0)
            for outcome in OUTCOMES:
                self.finished.labels(queue, outcome)

    def sampled(self, rows: list[Any]) -> None:
        """Set the queue gauges from one :data:`QUEUE_SAMPLE` result."""
        depth = queue_depth(rows, self.queues)
        self.waiting.clear()
        for queue, found in depth.items():
            for priority, jobs in found.waiting.items():
                self.waiting.labels(queue, str(priority)).set(jobs)
            self.scheduled.labels(queue).set(found.scheduled)
            self.picked.labels(queue).set(found.running)
            self.dead.labels(queue).set(found.dead)
            self.oldest.labels(queue).set(found.oldest_wait)
