"""The worker's Prometheus metrics, served on ``HMS_WORKER_METRICS_PORT``.

What each worker did (jobs finished by outcome, how long they ran) is counted as it happens; what
the queue holds (jobs waiting per queue and priority, the age of the oldest one, dead letters) is
sampled from PostgreSQL every few seconds, so every worker reports the same queue and any one of
them is enough to alert on. Labels are queue names, priorities and outcomes: a few dozen series.
"""

from __future__ import annotations

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
        waiting: dict[tuple[str, str], float] = {}
        scheduled = dict.fromkeys(self.queues, 0.0)
        picked = dict.fromkeys(self.queues, 0.0)
        dead = dict.fromkeys(self.queues, 0.0)
        oldest = dict.fromkeys(self.queues, 0.0)
        for row in rows:
            queue = row["entrypoint"]
            if queue not in scheduled:
                continue
            if row["status"] == "queued" and row["due"]:
                key = (queue, str(row["priority"]))
                waiting[key] = waiting.get(key, 0) + row["jobs"]
                oldest[queue] = max(oldest[queue], float(row["oldest"]))
            elif row["status"] == "queued":
                scheduled[queue] += row["jobs"]
            elif row["status"] == "picked":
                picked[queue] += row["jobs"]
            elif row["status"] == "failed":
                dead[queue] += row["jobs"]
        self.waiting.clear()
        for (queue, priority), jobs in waiting.items():
            self.waiting.labels(queue, priority).set(jobs)
        for queue in self.queues:
            self.scheduled.labels(queue).set(scheduled[queue])
            self.picked.labels(queue).set(picked[queue])
            self.dead.labels(queue).set(dead[queue])
            self.oldest.labels(queue).set(oldest[queue])
