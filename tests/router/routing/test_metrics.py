"""Metrics from routing records, without a service: the request path's series (a routing-record sink) and the
app-wide gauges."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from models.bundle import ThresholdsRecord
from models.policy import Policy, Thresholds
from router.lib.metrics import Metrics
from router.routing.answering import Attempt
from router.routing.decision import Decision
from router.routing.metrics import DecisionMetrics
from router.routing.record import RoutingRecord
from router.routing.schemas import Fallback, Scores, Timings
from router.thresholds.live import Tuning


def record(*, knob_source: str = "live", cost_weight: float = 0.03, version: int = 3, **fields: Any) -> RoutingRecord:
    tuning = Tuning(ThresholdsRecord(Thresholds(), cost_weight, version, "", ""), Policy(Thresholds(), cost_weight))
    decision = Decision(
        route="ft", source="policy", scores=Scores(0.7, 0.2, 0.1), vector=np.zeros(4, np.float32), embed_ms=4.0,
        classify_ms=1.0, batch_size=1, tuning=tuning, knob_source=knob_source, text="q",  # type: ignore[arg-type]
    )  # fmt: skip
    base: dict[str, Any] = {"answered_by": "ft", "generator": "llm", "timings": Timings(4.0, 1.0, 0.0, 120.0, 126.0)}
    return RoutingRecord("query", fields.pop("status", "answered"), decision, "model", **(base | fields))


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def metered() -> tuple[Metrics, DecisionMetrics]:
    metrics = Metrics()
    return metrics, DecisionMetrics(metrics.registry)


def test_an_unanswered_query_counts_its_failures_but_no_answer() -> None:
    metrics, decisions = metered()
    failures = (Attempt("ft", "llm:ft", "timeout", "..."), Attempt("rag", "retrieval", "retrieval_error", "..."))
    timings = Timings(4.0, 1.0, 3.0, 120.0, 126.0)
    decisions.observe(record(status="no_answer", answered_by=None, failures=failures, timings=timings))
    assert sample(metrics, "router_decisions_total", route="ft", endpoint="query", status="no_answer") == 1
    assert sample(metrics, "router_backend_failures_total", backend="llm:ft", reason="timeout") == 1
    assert sample(metrics, "router_backend_failures_total", backend="retrieval", reason="retrieval_error") == 1
    assert sample(metrics, "router_backend_seconds_count", backend="retrieval") == 1
    assert sample(metrics, "router_backend_seconds_count", backend="llm") == 0
    assert sample(metrics, "router_backend_seconds_count", backend="extractive") == 0
    assert sample(metrics, "router_retrieval_hits_count") == 0
    assert sample(metrics, "router_decision_seconds_sum") == 0.005


def test_a_fallback_is_counted_from_the_decided_route_to_the_answering_step() -> None:
    metrics, decisions = metered()
    fallback = Fallback(from_="ft", to="rag", reason="upstream_error", detail="...")
    decisions.observe(record(answered_by="rag", fallback=fallback, source_ids=("a",)))
    assert sample(metrics, "router_fallbacks_total", from_route="ft", to="rag", reason="upstream_error") == 1
    assert sample(metrics, "router_backend_seconds_sum", backend="llm") == 0.12
    assert sample(metrics, "router_retrieval_hits_sum") == 1


def test_gauges_follow_live_knob_decisions_and_ignore_non_finite_drift() -> None:
    metrics, decisions = metered()
    decisions.set_thresholds(2, 0.05)
    decisions.observe(record(knob_source="request", cost_weight=10.0, version=3))
    assert (sample(metrics, "router_thresholds_version"), sample(metrics, "router_knob")) == (3, 0.05)
    decisions.observe(record(cost_weight=0.07))
    assert sample(metrics, "router_knob") == 0.07
    assert sample(metrics, "router_drift_index") == 0
    metrics.set_drift(0.31)
    for bad in (math.nan, math.inf):
        metrics.set_drift(bad)
    assert sample(metrics, "router_drift_index") == 0.31
