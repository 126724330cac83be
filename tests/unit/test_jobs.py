"""The pieces of the job worker that need no database: backoff, signatures, settings."""

from __future__ import annotations

import datetime as dt

import pytest
from standardwebhooks import Webhook

from hms.jobs import notify
from hms.jobs.worker import backoff
from hms.settings import Settings, SettingsError


def test_backoff_doubles_up_to_the_cap_with_the_upper_half_random() -> None:
    for tries, ceiling in [(1, 10.0), (2, 20.0), (3, 40.0), (7, 640.0), (8, 900.0), (30, 900.0)]:
        delays = {backoff(tries, 10.0, 900.0) for _ in range(200)}
        assert all(
            dt.timedelta(seconds=ceiling / 2) <= d <= dt.timedelta(seconds=ceiling) for d in delays
        ), tries
        assert len(delays) > 100  # jittered, not one fixed delay


def test_signatures_verify_with_the_standard_webhooks_reference() -> None:
    secret = notify.new_secret()
    assert secret.startswith("whsec_")
    body = b'{"type":"appointment.reminder"}'
    now = int(dt.datetime.now(dt.UTC).timestamp())
    headers = {
        "webhook-id": "reminder_x_1",
        "webhook-timestamp": str(now),
        "webhook-signature": notify.signature(secret, "reminder_x_1", now, body),
    }
    assert Webhook(secret).verify(body, headers) == {"type": "appointment.reminder"}
    with pytest.raises(Exception, match="signature"):
        Webhook(notify.new_secret()).verify(body, headers)  # another hospital's secret
    tampered = {**headers, "webhook-id": "reminder_y_1"}
    with pytest.raises(Exception, match="signature"):
        Webhook(secret).verify(body, tampered)


def test_job_settings_are_checked() -> None:
    settings = Settings.from_env(
        {"HMS_JOB_CONCURRENCY": "reports=2", "HMS_REMINDER_LEAD_HOURS": "2.5"}
    )
    assert settings.job_concurrency == {"reminders": 8, "clinical": 4, "reports": 2}
    assert settings.reminder_lead == dt.timedelta(hours=2.5)
    for bad in ["emails=2", "reports=0", "reports=x", "reports"]:
        with pytest.raises(SettingsError, match="HMS_JOB_CONCURRENCY"):
            Settings.from_env({"HMS_JOB_CONCURRENCY": bad})
    with pytest.raises(SettingsError, match="HMS_WORKER_CONCURRENCY"):
        Settings.from_env({"HMS_WORKER_CONCURRENCY": "1"})
    with pytest.raises(SettingsError, match="HMS_JOB_HEARTBEAT_TIMEOUT"):
        Settings.from_env({"HMS_JOB_HEARTBEAT_TIMEOUT": "0.5"})


def test_the_queue_sample_is_read_the_same_for_gauges_and_stats() -> None:
    from prometheus_client import generate_latest

    from hms.jobs.metrics import WorkerMetrics, queue_depth

    def row(
        queue: str, priority: int, status: str, due: bool, jobs: int, oldest: float
    ) -> dict[str, object]:
        return {
            "entrypoint": queue,
            "priority": priority,
            "status": status,
            "due": due,
            "jobs": jobs,
            "oldest": oldest,
        }

    rows = [
        row("reminders", 30, "queued", True, 4, 12.5),
        row("reminders", 31, "queued", True, 1, 40.0),
        row("reminders", 30, "queued", False, 7, -3600.0),  # a reminder for later
        row("reminders", 30, "picked", False, 2, 0.0),
        row("reports", 10, "failed", False, 3, 900.0),
        row("someone-elses", 1, "queued", True, 9, 99.0),  # not ours: left out
    ]
    depth = queue_depth(rows, ["reminders", "clinical", "reports"])
    assert set(depth) == {"reminders", "clinical", "reports"}
    assert (depth["reminders"].waiting, depth["reminders"].oldest_wait) == ({30: 4, 31: 1}, 40.0)
    assert (depth["reminders"].scheduled, depth["reminders"].running) == (7, 2)
    assert (depth["reports"].dead, depth["reports"].oldest_wait) == (3, 0.0)
    assert depth["clinical"].waiting == {}

    metrics = WorkerMetrics(["reminders", "clinical", "reports"])
    metrics.sampled(rows)
    text = generate_latest(metrics.registry).decode()
    assert 'hms_jobs_waiting{priority="31",queue="reminders"} 1.0' in text
    assert 'hms_jobs_oldest_waiting_seconds{queue="reminders"} 40.0' in text
    assert 'hms_jobs_scheduled{queue="reminders"} 7.0' in text
    assert 'hms_jobs_in_progress{queue="reminders"} 2.0' in text
    assert 'hms_jobs_dead_letters{queue="reports"} 3.0' in text
    assert "someone-elses" not in text
    metrics.sampled([])  # the queue emptied: no stale waiting series
    assert "hms_jobs_waiting{" not in generate_latest(metrics.registry).decode()
