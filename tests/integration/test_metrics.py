"""Prometheus metrics of the real app over HTTP: known traffic, one scrape, counts equal to the traffic exactly."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from router.lib.metrics import CONTENT_TYPE
from router.lib.settings import Settings
from tests.fakes.vllm import FakeVLLM
from tests.fakes.vllm_server import fake_vllm_server
from tests.integration.conftest import serve

ROUTES = ("ft", "rag", "both")
QUESTIONS = (
    "What does the alpha parameter of LoRA control?",
    "who wrote the novel pride and prejudice",
    "What is the birth date of the director of the film that won best picture the year Titanic was released?",
)
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    response = httpx.get(f"{url}/metrics", timeout=30)
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def series(samples: Samples, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """The non-zero samples of ``name``, keyed by the values of ``labels`` (in that order)."""
    found = {}
    for (sample, pairs), number in samples.items():
        if sample == name and number:
            given = dict(pairs)
            found[tuple(given[label] for label in labels)] = number
    return found


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


@dataclass
class Traffic:
    routed: list[dict[str, Any]]
    answered: list[dict[str, Any]]
    samples: Samples


@pytest.fixture(scope="module")
def traffic(corpus_uri: str) -> Iterator[Traffic]:
    """A service of its own (counters from zero): 5 decisions (3 on the live knob, then 2 on the request's own),
    3 answers (policy, forced rag, forced both), 2 bad requests, one request for a document (no admin key: 403),
    an unknown path and a wrong method; then one scrape."""
    with (
        serve(Settings(retrieval={"uri": corpus_uri}, log={"format": "json"})) as service,
        httpx.Client(base_url=service.url, timeout=30) as http,
    ):
        routed = [http.post("/v1/route", json={"query": q}).json() for q in QUESTIONS]
        routed += [http.post("/v1/route", json={"query": q, "cost_weight": 10}).json() for q in QUESTIONS[:2]]
        asks = [
            {"query": QUESTIONS[0]},
            {"query": QUESTIONS[1], "route": "rag"},
            {"query": QUESTIONS[2], "route": "both", "top_k": 2},
        ]
        answered = [http.post("/v1/query", json=ask).json() for ask in asks]
        assert http.post("/v1/query", json={"query": "   "}).status_code == 400  # refused by the service
        assert http.post("/v1/route", json={"query": 42}).status_code == 400  # refused by validation
        assert http.get("/v1/documents/some-document").status_code == 403
        assert http.get("/v1/nothing").status_code == 404
        assert http.get("/v1/route").status_code == 405
        yield Traffic(routed, answered, scrape(service.url))


def test_decisions_are_counted_by_route_endpoint_and_status(traffic: Traffic) -> None:
    expected = Counter((r["route"], "route", "decided") for r in traffic.routed)
    expected.update((a["route"], "query", "answered") for a in traffic.answered)
    counted = series(traffic.samples, "router_decisions_total", "route", "endpoint", "status")
    assert counted == dict(expected) and sum(counted.values()) == 8
    for route in ROUTES:  # every known combination is exposed from the start, at zero when unused
        assert value(traffic.samples, "router_decisions_total", route=route, endpoint="query", status="no_answer") == 0


def test_http_requests_are_counted_by_route_template_and_status(traffic: Traffic) -> None:
    counted = series(traffic.samples, "router_http_requests_total", "method", "path", "status")
    assert counted == {
        ("POST", "/v1/route", "200"): 5,
        ("POST", "/v1/route", "400"): 1,
        ("POST", "/v1/query", "200"): 3,
        ("POST", "/v1/query", "400"): 1,
        ("GET", "/v1/documents/{doc_id}", "403"): 1,
        ("GET", "unmatched", "404"): 1,
        ("GET", "unmatched", "405"): 1,
    }
    timed = series(traffic.samples, "router_http_request_seconds_count", "method", "path")
    assert timed == {
        ("POST", "/v1/route"): 6,
        ("POST", "/v1/query"): 4,
        ("GET", "/v1/documents/{doc_id}"): 1,
        ("GET", "unmatched"): 2,
    }


def test_latency_histograms_count_the_stages_that_ran(traffic: Traffic) -> None:
    samples = traffic.samples
    assert value(samples, "router_decision_seconds_count") == 8
    stages = series(samples, "router_stage_seconds_count", "stage")
    # decisions alone neither retrieve nor generate; without an LLM every answer is extractive, from passages
    assert stages == {("embed",): 8, ("classify",): 8, ("total",): 8, ("retrieve",): 3, ("generate",): 3}
    assert series(samples, "router_backend_seconds_count", "backend") == {("retrieval",): 3, ("extractive",): 3}
    assert value(samples, "router_backend_seconds_count", backend="llm") == 0
    for stage in ("embed", "total"):
        assert value(samples, "router_stage_seconds_sum", stage=stage) > 0
        assert value(samples, "router_stage_seconds_bucket", stage=stage, le="+Inf") == 8


def test_retrieval_hits_and_scores_match_the_responses(traffic: Traffic) -> None:
    samples = traffic.samples
    assert value(samples, "router_retrieval_hits_count") == 3
    assert value(samples, "router_retrieval_hits_sum") == sum(len(a["sources"]) for a in traffic.answered)
    assert value(samples, "router_retrieval_hits_bucket", le="2.0") == 1  # the top_k=2 answer; the others have 4
    decisions = traffic.routed + traffic.answered
    for route in ROUTES:
        assert value(samples, "router_route_score_count", route=route) == 8
        total = sum(d["scores"][route] for d in decisions)
        assert value(samples, "router_route_score_sum", route=route) == pytest.approx(total, abs=1e-6)
        below_half = sum(d["scores"][route] <= 0.5 for d in decisions)
        assert value(samples, "router_route_score_bucket", route=route, le="0.5") == below_half


def test_gauges_show_the_live_thresholds_and_no_fallbacks(traffic: Traffic) -> None:
    samples = traffic.samples
    live_knob = traffic.routed[0]["cost_weight"]
    assert traffic.routed[0]["knob_source"] == "live" and traffic.routed[-1]["knob_source"] == "request"
    assert value(samples, "router_thresholds_version") == traffic.routed[0]["thresholds_version"] == 1
    assert value(samples, "router_knob") == live_knob != 10  # the latest live-knob decision, not a request's own
    assert value(samples, "router_drift_index") == 0
    assert series(samples, "router_fallbacks_total", "from_route", "to", "reason") == {}
    assert series(samples, "router_backend_failures_total", "backend", "reason") == {}


def test_metrics_endpoint_is_plain_text_and_not_in_the_schema(corpus_uri: str) -> None:
    with serve(Settings(retrieval={"uri": corpus_uri})) as service, httpx.Client(base_url=service.url) as http:
        response = http.get("/metrics")
        assert response.status_code == 200 and response.headers["content-type"] == CONTENT_TYPE
        assert "# TYPE router_decisions_total counter" in response.text
        assert "/metrics" not in http.get("/schema/openapi.json").json()["paths"]
        again = scrape(service.url)  # the first scrape is counted once its response is complete
        assert series(again, "router_http_requests_total", "path", "status") == {
            ("/metrics", "200"): 1,
            ("/schema/openapi.json", "200"): 1,
        }


def test_fallbacks_and_backend_failures_are_counted(corpus_uri: str) -> None:
    """Through a fake vLLM: ft fails twice with 500 (retried, then dead), so rag answers; then ft answers."""
    fake = FakeVLLM(base_model="base", adapters={"ft": "/adapters/ft"}, reply="An answer.")
    with fake_vllm_server(fake) as url:
        llm = {"base_url": url, "base_model": "base", "ft_model": "ft", "retry_attempts": 2}
        settings = Settings(retrieval={"uri": corpus_uri}, llm=llm, breaker={"min_calls": 1000})
        with serve(settings) as service, httpx.Client(base_url=service.url, timeout=30) as http:
            fake.faults.extend([("status", 500), ("status", 500)])
            fell_back = http.post("/v1/query", json={"query": QUESTIONS[0], "route": "ft"}).json()
            direct = http.post("/v1/query", json={"query": QUESTIONS[0], "route": "ft"}).json()
            samples = scrape(service.url)
    assert (fell_back["answered_by"], fell_back["fallback"]["reason"], direct["answered_by"]) == (
        "rag",
        "upstream_error",
        "ft",
    )
    assert series(samples, "router_fallbacks_total", "from_route", "to", "reason") == {
        ("ft", "rag", "upstream_error"): 1
    }
    assert series(samples, "router_backend_failures_total", "backend", "reason") == {("llm:ft", "upstream_error"): 1}
    assert series(samples, "router_decisions_total", "route", "endpoint", "status") == {("ft", "query", "answered"): 2}
    assert series(samples, "router_backend_seconds_count", "backend") == {("retrieval",): 1, ("llm",): 2}
    assert series(samples, "router_stage_seconds_count", "stage") == {
        ("embed",): 2, ("classify",): 2, ("total",): 2, ("retrieve",): 1, ("generate",): 2,
    }  # fmt: skip
    assert value(samples, "router_retrieval_hits_count") == 2  # the ft answer counts its zero passages
    assert value(samples, "router_retrieval_hits_sum") == len(fell_back["sources"]) > 0
