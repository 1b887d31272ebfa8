"""The request path's Prometheus series, fed by :class:`DecisionMetrics.observe`, a routing-record sink: decisions,
decision and stage times, backend times and failures, fallbacks, scores, and the live thresholds and knob. They live
on the app's registry (``router.lib.metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from models.routes import ROUTES
from router.lib.metrics import DECISION_BUCKETS, LATENCY_BUCKETS
from router.routing.record import STAGES, RoutingRecord

LLM_STEPS = frozenset(ROUTES)
"""``answered_by`` values that mean an LLM answered (the rest: ``extractive``)."""
HITS_BUCKETS = (0, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 40, 50)
SCORE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))
OUTCOMES = (("route", "decided"), ("query", "answered"), ("query", "no_answer"), ("query", "client_left"))
"""The ``(endpoint, status)`` pairs a routing record can have; their counters start at zero."""
ANSWERING = frozenset({"answered", "no_answer"})
"""Statuses of records whose answering stages (retrieve, generate) ran."""


class DecisionMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
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

    def observe(self, record: RoutingRecord) -> None:
        """Counts one routing record; a sink."""
        decision, timings = record.decision, record.timings
        self.decisions.labels(decision.route, record.endpoint, record.status).inc()
        self.decision_seconds.observe((timings.embed + timings.classify) / 1000)
        for route in ROUTES:
            self.route_score.labels(route).observe(getattr(decision.scores, route))
        self.thresholds_version.set(decision.tuning.record.version)
        if decision.knob_source == "live":
            self.knob.set(decision.tuning.policy.cost_weight)
        self._observe_stages(record)
        self._observe_backends(record)
        if record.fallback is not None:
            fallback = record.fallback
            self.fallbacks.labels(decision.route, fallback.to, fallback.reason).inc()
        for failure in record.failures:
            self.backend_failures.labels(failure.backend, failure.reason).inc()

    def _observe_stages(self, record: RoutingRecord) -> None:
        """Stages that ran: retrieve and generate only when answering, retrieve only when passages were fetched."""
        for stage, ms in record.timings_ms().items():
            answering = stage in ("retrieve", "generate")
            if answering and (record.status not in ANSWERING or (stage == "retrieve" and ms <= 0)):
                continue
            self.stage_seconds.labels(stage).observe(ms / 1000)

    def _observe_backends(self, record: RoutingRecord) -> None:
        timings = record.timings
        if timings.retrieve > 0:
            self.backend_seconds.labels("retrieval").observe(timings.retrieve / 1000)
        if record.status != "answered":
            return
        generator = "llm" if record.answered_by in LLM_STEPS else "extractive"
        self.backend_seconds.labels(generator).observe(timings.generate / 1000)
        self.retrieval_hits.observe(len(record.source_ids))

    def set_thresholds(self, version: int, cost_weight: float) -> None:
        """The live thresholds at startup, before the first decision reports them."""
        self.thresholds_version.set(version)
        self.knob.set(cost_weight)
