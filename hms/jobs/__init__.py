"""Background work: ``hms worker`` runs the jobs requests enqueue (hms.persistence.jobs).

PgQueuer keeps the queue in PostgreSQL: a job row is written in the transaction of the write that
causes it, workers take jobs with ``FOR UPDATE SKIP LOCKED`` and wake on the queue's NOTIFY.
Each job runs under the tenant of its hospital, as a request does (hms.jobs.base.tenant).
"""
