"""Prometheus metrics, on a registry the app owns (one per app, created in its lifespan).

Only what the platform needs today: whether each dependency answered the last readiness probe.
A degraded dependency with a fallback keeps the instance in rotation (``/readyz`` stays 200)
and is visible here instead.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, generate_latest
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

    def render(self) -> bytes:
        return generate_latest(self.registry)
