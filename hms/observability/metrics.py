"""Prometheus metrics, on a registry the app owns (one per app, created in its lifespan).

Base units and ``_total``/``_seconds`` suffixes; every label set is bounded: operation names
pass through :func:`hms.observability.access.operation_label` (at most a few hundred per
process, never ids or values), codes and tiers come from fixed lists.

With several uvicorn workers (``HMS_WORKERS``), ``hms serve`` points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before the workers start: each worker then
writes its samples there and ``/metrics``, whichever worker answers it, adds them all up.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PAUSES = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
STATEMENTS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
BATCHES = (1, 2, 5, 10, 20, 50, 100, 200, 500)
COSTS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10000)


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.dependency_up = Gauge(
            "hms_dependency_up",
            "1 when the dependency answered the last readiness probe, else 0.",
            ["dependency"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )

        # Requests.
        self.requests = Histogram(
            "hms_graphql_request_duration_seconds",
            "GraphQL requests by operation type, operation name (named operations only, bounded)"
            " and outcome (ok, partial, or the refusal's code).",
            ["operation_type", "operation_name", "outcome"],
            registry=registry,
            buckets=SECONDS,
        )
        self.in_flight = Gauge(
            "hms_graphql_requests_in_flight",
            "GraphQL requests being answered now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.errors = Counter(
            "hms_graphql_errors_total",
            "GraphQL errors answered, by code (a request refused as a whole counts one).",
            ["code"],
            registry=registry,
        )
        self.deadlines = Counter(
            "hms_request_deadlines_total",
            "Requests stopped at their deadline (HMS_READ_TIMEOUT, HMS_WRITE_TIMEOUT).",
            registry=registry,
        )

        # The database.
        self.statements = Histogram(
            "hms_sql_statements_per_request",
            "SQL statements a request ran in its transaction, by execution path.",
            ["path"],
            registry=registry,
            buckets=STATEMENTS,
        )
        self.pool_wait = Histogram(
            "hms_db_pool_wait_seconds",
            "Time a request waited for its database connection (pool checkout and connect).",
            registry=registry,
            buckets=SECONDS,
        )
        self.pool = Gauge(
            "hms_db_pool_connections",
            "Connections of the request pool by state (size: kept open, in_use: checked out,"
            " overflow: opened beyond the size).",
            ["engine", "state"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.reads = Counter(
            "hms_db_reads_total",
            "Read requests by the database that served them (primary, replica).",
            ["target"],
            registry=registry,
        )
        self.replica_fallbacks = Counter(
            "hms_db_replica_fallbacks_total",
            "Reads that failed on a replica and were answered by the primary.",
            registry=registry,
        )
        self.replica_up = Gauge(
            "hms_db_replica_up",
            "1 while the replica is in rotation (answers, is a standby, not lagging), else 0.",
            ["replica"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.replica_lag = Gauge(
            "hms_db_replica_lag_bytes",
            "How far the replica's replay trailed the primary's WAL at the last check.",
            ["replica"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.cache_fallbacks = Counter(
            "hms_cache_fallbacks_total",
            "Cache operations that failed (Redis down) and fell back to the source, by use.",
            ["name"],
            registry=registry,
        )
        self.loader_batch = Histogram(
            "hms_loader_batch_size",
            "Keys per DataLoader batch (one statement each), by loader.",
            ["loader"],
            registry=registry,
            buckets=BATCHES,
        )

        # Caches and documents.
        self.cache = Counter(
            "hms_cache_requests_total",
            "Lookups in the in-process caches by name (documents: parsed and validated"
            " documents; plans: compiled statements) and result (hit, miss).",
            ["name", "result"],
            registry=registry,
        )
        self.documents = Counter(
            "hms_documents_total",
            "Persisted-document lookups by tier (local, cache, registry) and outcome.",
            ["tier", "outcome"],
            registry=registry,
        )
        self.document_rejections = Counter(
            "hms_documents_rejected_total",
            "Requests refused by the persisted-document rules, by error code.",
            ["code"],
            registry=registry,
        )

        # Cost.
        self.cost = Histogram(
            "hms_graphql_cost",
            "Operation cost: estimated before running, actual after (by kind).",
            ["kind"],
            registry=registry,
            buckets=COSTS,
        )
        self.cost_refusals = Counter(
            "hms_cost_limited_total",
            "Requests over a cost cap or budget (outcome refused, or measured in measure mode),"
            " and budget-store outages (outcome admitted, refused, refund_lost), by code.",
            ["code", "outcome"],
            registry=registry,
        )

        # The audit trail.
        self.audit_events = Counter(
            "hms_audit_events_written_total",
            "Audit events written, by how (batch: reads, by the worker's writer; request: in a"
            " write's own transaction).",
            ["path"],
            registry=registry,
        )

        # The process.
        self.gc_pause = Histogram(
            "hms_gc_pause_seconds",
            "Garbage-collector pauses (the event loop stands still meanwhile), by generation.",
            ["generation"],
            registry=registry,
            buckets=PAUSES,
        )
        if not multiprocess():
            ProcessCollector(registry=registry)  # memory, CPU, open files of this process
        self._gc_started = 0.0
        gc.callbacks.append(self._gc)

    def _gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started:
            self.gc_pause.labels(str(info.get("generation", "?"))).observe(
                time.perf_counter() - self._gc_started
            )
            self._gc_started = 0.0

    def pools(self, engines: Iterable[tuple[str, Any]]) -> None:
        """Record the request pools' state (SQLAlchemy QueuePool: size, in use, overflow)."""
        for name, engine in engines:
            pool = engine.pool
            size, in_use, overflow = pool.size(), pool.checkedout(), max(pool.overflow(), 0)
            self.pool.labels(name, "size").set(size)
            self.pool.labels(name, "in_use").set(in_use)
            self.pool.labels(name, "overflow").set(overflow)

    def replicas(self, routing: Any) -> None:
        """Record each replica's state as the last check saw it."""
        for replica in routing.replicas:
            self.replica_up.labels(replica.name).set(1 if replica.healthy else 0)
            if replica.lag is not None:
                self.replica_lag.labels(replica.name).set(replica.lag)

    def render(self) -> bytes:
        if multiprocess():
            from prometheus_client import multiprocess as shared

            registry = CollectorRegistry()
            shared.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)

    def close(self) -> None:
        """Stop observing the collector (the app is shutting down)."""
        if self._gc in gc.callbacks:
            gc.callbacks.remove(self._gc)
