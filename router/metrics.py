"""Prometheus metrics: decisions, stage and backend latencies, fallbacks, failures, scores, HTTP requests.

Each app has its own :class:`Metrics` (its own registry, so several apps can live in one process, as in the tests).
The service hands it every routing record (:meth:`Metrics.observe`, a service observer), the ``before_send`` hook
every finished HTTP response (:meth:`Metrics.observe_http`), and ``GET /metrics`` serves the text exposition.
Times are in seconds; the ``path`` label is the route template (``unmatched`` when no route matched), so its
values are bounded by the app's routes.
"""

from __future__ import annotations

import json
import math
from typing import Any

from litestar import Response, get
from litestar.datastructures import State
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from models.routes import ROUTES
from router.routing_log import STAGES

MEDIA_TYPE = "text/plain; version=0.0.4"
CONTENT_TYPE = f"{MEDIA_TYPE}; charset=utf-8"
"""The Prometheus text format; litestar adds the charset to ``text/`` media types itself."""
UNMATCHED = "unmatched"
LLM_STEPS = frozenset(ROUTES)
"""``answered_by`` values that mean an LLM answered (the rest: ``extractive``)."""
DECISION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
LATENCY_BUCKETS = (*DECISION_BUCKETS, 2.5, 5.0, 10.0, 30.0, 60.0)
HITS_BUCKETS = (0, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 40, 50)
SCORE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))
OUTCOMES = (("route", "decided"), ("query", "answered"), ("query", "no_answer"))
"""The ``(endpoint, status)`` pairs a routing record can have; their counters start at zero."""


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.decisions = Counter("router_decisions", "Routing decisions", ["route", "endpoint", "status"], registry=r)
        self.decision_seconds = Histogram(
            "router_decision_seconds", "Decision time: embed + classify", buckets=DECISION_BUCKETS, registry=r
        )
        self.stage_seconds = Histogram(
            "router_stage_seconds", "Time per request stage", ["stage"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.backend_seconds = Histogram(
            "router_backend_seconds", "Time in a backend: retrieval, llm, extractive", ["backend"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.retrieval_hits = Histogram(
            "router_retrieval_hits", "Passages behind an answer", buckets=HITS_BUCKETS, registry=r
        )
        self.fallbacks = Counter(
            "router_fallbacks", "Answers given by another step than the decided route", ["from_route", "to", "reason"],
            registry=r,
        )  # fmt: skip
        self.backend_failures = Counter(
            "router_backend_failures", "Failed backend calls while answering", ["backend", "reason"], registry=r
        )
        self.route_score = Histogram(
            "router_route_score", "Calibrated score per route", ["route"], buckets=SCORE_BUCKETS, registry=r
        )
        self.thresholds_version = Gauge(
            "router_thresholds_version", "Thresholds version of the latest decision", registry=r
        )
        self.knob = Gauge("router_knob", "cost_weight of the latest decision made with the live knob", registry=r)
        self.drift_index = Gauge(
            "router_drift_index", "Score drift against the reference; updated when /v1/stats computes it", registry=r
        )
        self.http_requests = Counter("router_http_requests", "HTTP responses", ["method", "path", "status"], registry=r)
        self.http_seconds = Histogram(
            "router_http_request_seconds", "HTTP request duration", ["method", "path"], buckets=LATENCY_BUCKETS,
            registry=r,
        )  # fmt: skip
        self._start_at_zero()

    def _start_at_zero(self) -> None:
        """Children with known label values exist from the start, so rates and dashboards see zeros, not gaps."""
        for route in ROUTES:
            self.route_score.labels(route)
            for endpoint, status in OUTCOMES:
                self.decisions.labels(route, endpoint, status)
        for stage in STAGES:
            self.stage_seconds.labels(stage)
        for backend in ("retrieval", "llm", "extractive"):
            self.backend_seconds.labels(backend)

    def observe(self, row: dict[str, Any]) -> None:
        """Counts one routing record (a row of ``router.routing_log.schema``); a service observer."""
        self.decisions.labels(row["route"], row["endpoint"], row["status"]).inc()
        self.decision_seconds.observe((row["ms_embed"] + row["ms_classify"]) / 1000)
        for route in ROUTES:
            self.route_score.labels(route).observe(row[f"score_{route}"])
        self.thresholds_version.set(row["thresholds_version"])
        if row["knob_source"] == "live":
            self.knob.set(row["cost_weight"])
        self._observe_stages(row)
        self._observe_backends(row)
        if row["fallback"]:
            self.fallbacks.labels(row["route"], row["fallback_to"], row["fallback_reason"]).inc()
        for failure in json.loads(row["failures"]):
            self.backend_failures.labels(failure["backend"], failure["reason"]).inc()

    def _observe_stages(self, row: dict[str, Any]) -> None:
        """Stages that ran: retrieve and generate only when answering, retrieve only when passages were fetched."""
        for stage in STAGES:
            ms = row[f"ms_{stage}"]
            answering = stage in ("retrieve", "generate")
            if answering and (row["endpoint"] == "route" or (stage == "retrieve" and ms <= 0)):
                continue
            self.stage_seconds.labels(stage).observe(ms / 1000)

    def _observe_backends(self, row: dict[str, Any]) -> None:
        if row["ms_retrieve"] > 0:
            self.backend_seconds.labels("retrieval").observe(row["ms_retrieve"] / 1000)
        if row["status"] != "answered":
            return
        generator = "llm" if row["answered_by"] in LLM_STEPS else "extractive"
        self.backend_seconds.labels(generator).observe(row["ms_generate"] / 1000)
        self.retrieval_hits.observe(len(row["source_ids"]))

    def observe_http(self, method: str, path: str, status: int, seconds: float) -> None:
        """One finished response; ``path`` is the route template (``UNMATCHED`` when none matched)."""
        self.http_requests.labels(method, path, str(status)).inc()
        self.http_seconds.labels(method, path).observe(seconds)

    def set_thresholds(self, version: int, cost_weight: float) -> None:
        """The live thresholds at startup, before the first decision reports them."""
        self.thresholds_version.set(version)
        self.knob.set(cost_weight)

    def set_drift(self, value: float) -> None:
        """The latest drift index (every minute, and at each ``/v1/stats``); starts at 0, non-finite values are
        ignored so the gauge never exposes NaN."""
        if math.isfinite(value):
            self.drift_index.set(value)

    def render(self) -> bytes:
        return generate_latest(self.registry)


@get("/metrics", include_in_schema=False, sync_to_thread=False, media_type=MEDIA_TYPE)
def scrape(state: State) -> Response[bytes]:
    """Prometheus text exposition of this app's registry."""
    metrics: Metrics = state.metrics
    return Response(metrics.render(), media_type=MEDIA_TYPE)
