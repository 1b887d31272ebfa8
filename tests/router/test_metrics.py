"""Metrics from routing records (rows of the routing log), without a service."""

from __future__ import annotations

import json
import math
from typing import Any

from router.metrics import Metrics


def row(**fields: Any) -> dict[str, Any]:
    base = {
        "endpoint": "query", "route": "ft", "status": "answered", "answered_by": "ft", "knob_source": "live",
        "cost_weight": 0.03, "thresholds_version": 3, "score_ft": 0.7, "score_rag": 0.2, "score_both": 0.1,
        "fallback": False, "fallback_to": None, "fallback_reason": None, "failures": "[]", "source_ids": [],
        "ms_embed": 4.0, "ms_classify": 1.0, "ms_retrieve": 0.0, "ms_generate": 120.0, "ms_total": 126.0,
    }  # fmt: skip
    return base | fields


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_an_unanswered_query_counts_its_failures_but_no_answer() -> None:
    metrics = Metrics()
    failures = [
        {"step": "ft", "backend": "llm:ft", "reason": "timeout", "detail": "..."},
        {"step": "rag", "backend": "retrieval", "reason": "retrieval_error", "detail": "..."},
    ]
    metrics.observe(row(status="no_answer", answered_by=None, failures=json.dumps(failures), ms_retrieve=3.0))
    assert sample(metrics, "router_decisions_total", route="ft", endpoint="query", status="no_answer") == 1
    assert sample(metrics, "router_backend_failures_total", backend="llm:ft", reason="timeout") == 1
    assert sample(metrics, "router_backend_failures_total", backend="retrieval", reason="retrieval_error") == 1
    assert sample(metrics, "router_backend_seconds_count", backend="retrieval") == 1
    assert sample(metrics, "router_backend_seconds_count", backend="llm") == 0
    assert sample(metrics, "router_backend_seconds_count", backend="extractive") == 0
    assert sample(metrics, "router_retrieval_hits_count") == 0
    assert sample(metrics, "router_decision_seconds_sum") == 0.005


def test_a_fallback_is_counted_from_the_decided_route_to_the_answering_step() -> None:
    metrics = Metrics()
    metrics.observe(
        row(answered_by="rag", fallback=True, fallback_to="rag", fallback_reason="upstream_error", source_ids=["a"])
    )
    assert sample(metrics, "router_fallbacks_total", from_route="ft", to="rag", reason="upstream_error") == 1
    assert sample(metrics, "router_backend_seconds_sum", backend="llm") == 0.12
    assert sample(metrics, "router_retrieval_hits_sum") == 1


def test_gauges_follow_live_knob_decisions_and_ignore_non_finite_drift() -> None:
    metrics = Metrics()
    metrics.set_thresholds(2, 0.05)
    metrics.observe(row(knob_source="request", cost_weight=10.0, thresholds_version=3))
    assert (sample(metrics, "router_thresholds_version"), sample(metrics, "router_knob")) == (3, 0.05)
    metrics.observe(row(cost_weight=0.07))
    assert sample(metrics, "router_knob") == 0.07
    assert sample(metrics, "router_drift_index") == 0
    metrics.set_drift(0.31)
    for bad in (math.nan, math.inf):
        metrics.set_drift(bad)
    assert sample(metrics, "router_drift_index") == 0.31
