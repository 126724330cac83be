"""Prometheus metrics, on a registry the app owns (one per app, created in its lifespan).

Only what the platform needs today: whether each dependency answered the last readiness probe
(a degraded dependency with a fallback keeps the instance in rotation, ``/readyz`` stays 200,
and is visible here instead), and how persisted documents are found and refused.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.dependency_up = Gauge(
            "hms_dependency_up",
            "1 when the dependency answered the last readiness probe, else 0.",
            ["dependency"],
            registry=self.registry,
        )

        self.documents = Counter(
            "hms_documents_total",
            "Persisted-document lookups by tier (local, cache, registry) and outcome.",
            ["tier", "outcome"],
            registry=self.registry,
        )
        self.document_rejections = Counter(
            "hms_documents_rejected_total",
            "Requests refused by the persisted-document rules, by error code.",
            ["code"],
            registry=self.registry,
        )

        self.cost_refusals = Counter(
            "hms_cost_limited_total",
            "Requests over a cost cap or budget (outcome refused, or measured in measure mode),"
            " and budget-store outages (outcome admitted, refused, refund_lost), by code.",
            ["code", "outcome"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
