"""Prometheus metrics: the app's registry, HTTP requests and the drift gauge (served by ``router.lib.scrape``).

Each app has its own :class:`Metrics` (its own registry, so several apps can live in one process, as in the tests).
The ``before_send`` hook hands it every finished HTTP response (:meth:`Metrics.observe_http`); the request path's
series (decisions, stages, backends, fallbacks, scores) are registered on the same registry by
``router.routing.metrics``, a routing-record sink. Times are in seconds; the ``path`` label is the route template
(``unmatched`` when no route matched), so its values are bounded by the app's routes.
"""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

MEDIA_TYPE = "text/plain; version=0.0.4"
CONTENT_TYPE = f"{MEDIA_TYPE}; charset=utf-8"
"""The Prometheus text format; litestar adds the charset to ``text/`` media types itself."""
UNMATCHED = "unmatched"
DECISION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
LATENCY_BUCKETS = (*DECISION_BUCKETS, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.drift_index = Gauge(
            "router_drift_index", "Score drift against the reference; updated when /v1/stats computes it", registry=r
        )
        self.http_requests = Counter("router_http_requests", "HTTP responses", ["method", "path", "status"], registry=r)
        self.http_seconds = Histogram(
            "router_http_request_seconds", "HTTP request duration", ["method", "path"], buckets=LATENCY_BUCKETS,
            registry=r,
        )  # fmt: skip

    def observe_http(self, method: str, path: str, status: int, seconds: float) -> None:
        """One finished response; ``path`` is the route template (``UNMATCHED`` when none matched)."""
        self.http_requests.labels(method, path, str(status)).inc()
        self.http_seconds.labels(method, path).observe(seconds)

    def set_drift(self, value: float) -> None:
        """The latest drift index (every minute, and at each ``/v1/stats``); starts at 0, non-finite values are
        ignored so the gauge never exposes NaN."""
        if math.isfinite(value):
            self.drift_index.set(value)

    def render(self) -> bytes:
        return generate_latest(self.registry)
