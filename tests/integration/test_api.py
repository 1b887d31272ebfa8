"""The real app over HTTP: decision, answer, validation, request ids, health, schema, routing records."""

from __future__ import annotations

import httpx
import pytest

from models.bundle import default_bundle_dir, load_bundle, load_thresholds
from tests.integration.conftest import LiveService

ROUTES = {"ft", "rag", "both"}


def test_route_returns_a_real_decision(http: httpx.Client) -> None:
    response = http.post("/v1/route", json={"query": "What does the alpha parameter of LoRA control?"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {
        "route", "route_source", "scores", "thresholds_version", "cost_weight", "knob_source", "model_version",
        "request_id",
    }  # fmt: skip
    assert (
        body["knob_source"] == "live"
        and body["cost_weight"]
        == load_bundle(default_bundle_dir())
        .policy(load_thresholds(default_bundle_dir() / "thresholds.json"))
        .cost_weight
    )
    assert body["route"] in ROUTES and body["route_source"] == "policy"
    assert set(body["scores"]) == ROUTES and all(0 <= p <= 1 for p in body["scores"].values())
    assert body["model_version"] == load_bundle(default_bundle_dir()).version
    assert body["thresholds_version"] == 1
    assert response.headers["x-request-id"] == body["request_id"]


def test_scores_differ_between_questions(http: httpx.Client) -> None:
    trivia = http.post("/v1/route", json={"query": "who wrote the novel pride and prejudice"}).json()
    multihop = http.post(
        "/v1/route",
        json={
            "query": "What is the birth date of the director of the film that won best picture the year Titanic was "
            "released?"
        },
    ).json()
    assert trivia["scores"] != multihop["scores"]
    assert trivia["scores"]["ft"] > multihop["scores"]["ft"]


def test_query_answers_with_retrieved_sources(http: httpx.Client) -> None:
    response = http.post("/v1/query", json={"query": "What does the alpha parameter of LoRA control?", "top_k": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["generator"] == "extractive" and body["model"] is None
    assert len(body["sources"]) == 3
    top = body["sources"][0]
    assert set(top) == {"id", "document_id", "title", "section", "uri", "score", "text"}
    for source in body["sources"]:  # Markdown chunks carry their heading trail, JSONL documents have none
        if source["uri"].endswith(".md"):
            assert source["section"].startswith(source["title"])
    assert "lora" in (top["title"] + top["text"]).lower()
    assert [s["score"] for s in body["sources"]] == sorted((s["score"] for s in body["sources"]), reverse=True)
    assert "[1]" in body["answer"] or "[2]" in body["answer"] or "[3]" in body["answer"]
    assert set(body["timings_ms"]) == {"embed", "classify", "retrieve", "generate", "total"}
    assert body["timings_ms"]["total"] >= body["timings_ms"]["embed"] > 0


def test_a_requested_route_overrides_the_policy(http: httpx.Client) -> None:
    body = http.post("/v1/query", json={"query": "How does reciprocal rank fusion work?", "route": "both"}).json()
    assert body["route"] == "both" and body["route_source"] == "request"
    assert len(body["sources"]) == 4  # retrieval.top_k default


def test_request_id_is_taken_from_the_caller(http: httpx.Client) -> None:
    response = http.post("/v1/route", json={"query": "hello"}, headers={"X-Request-ID": "trace-abc.123"})
    assert response.headers["x-request-id"] == "trace-abc.123"
    assert response.json()["request_id"] == "trace-abc.123"
    unsafe = http.post("/v1/route", json={"query": "hello"}, headers={"X-Request-ID": "bad id\twith spaces"})
    assert unsafe.headers["x-request-id"] != "bad id\twith spaces"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"query": ""}, "empty"),
        ({"query": "   \n\t "}, "empty"),
        ({"query": "x" * 501}, "limit is 500"),
        ({"query": 42}, "query: must be a string, not an integer"),
        ({}, "'query' is required"),
        ({"query": "ok", "mode": "fast"}, "'mode' is not a known field"),
        ({"query": "ok", "route": "web"}, "route: 'web' is not one of the allowed values"),
        ({"query": "ok", "top_k": 0}, "top_k: must be at least 1"),
        ({"query": "ok", "top_k": 51}, "top_k: must be at most 50"),
        ({"query": "ok", "top_k": "three"}, "top_k: must be an integer or null, not a string"),
        ({"query": "ok", "top_k": 2.5}, "top_k: must be an integer or null, not a number"),
        ({"query": "ok", "top_k": True}, "top_k: must be an integer or null, not true or false"),
        ({"query": "ok", "cost_weight": -0.1}, "cost_weight: must be at least 0"),
        ({"query": "ok", "cost_weight": 11}, "cost_weight: must be at most 10"),
        ({"query": "ok", "cost_weight": "high"}, "cost_weight: must be a number or null, not a string"),
    ],
)
def test_bad_input_gets_400_with_a_reason(http: httpx.Client, payload: dict, reason: str) -> None:
    response = http.post("/v1/query", json=payload)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 400 and body["request_id"] == response.headers["x-request-id"]
    assert reason in body["detail"] + str(body.get("errors", ""))


def test_invalid_json_and_unknown_paths_get_problem_details(http: httpx.Client) -> None:
    bad = http.post("/v1/route", content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and bad.json()["status"] == 400
    missing = http.get("/v1/nothing")
    assert missing.status_code == 404 and missing.json()["title"] == "Not Found"
    assert missing.headers["x-request-id"] and missing.json()["request_id"] == missing.headers["x-request-id"]
    wrong_method = http.delete("/v1/route")  # answered before any middleware, like the 404
    assert wrong_method.status_code == 405 and wrong_method.json()["request_id"] == wrong_method.headers["x-request-id"]
    wrong_method = http.get("/v1/route")
    assert wrong_method.status_code == 405


def test_health_ready_and_openapi(http: httpx.Client) -> None:
    assert http.get("/health").json() == {"status": "ok"}
    ready = http.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert ready.json()["checks"]["retrieval"].endswith("chunks")
    schema = http.get("/schema/openapi.json").json()
    assert {"/v1/route", "/v1/query", "/health", "/ready"} <= set(schema["paths"])


def test_every_request_writes_one_routing_record_and_one_request_line(live: LiveService, http: httpx.Client) -> None:
    response = http.post(
        "/v1/query",
        json={"query": "How many dimensions does all-MiniLM-L6-v2 produce?"},
        headers={"X-Request-ID": "record-check-1"},
    )
    assert response.status_code == 200
    decided = [e for e in live.events("route_decided") if e.get("request_id") == "record-check-1"]
    completed = [e for e in live.events("request_completed") if e.get("request_id") == "record-check-1"]
    assert len(decided) == 1 and len(completed) == 1
    record = decided[0]
    body = response.json()
    assert record["route"] == body["route"] and record["scores"] == body["scores"]
    assert record["model_version"] == body["model_version"] and record["thresholds_version"] == 1
    assert record["source_ids"] == [s["id"] for s in body["sources"]]
    assert set(record["timings_ms"]) == {"embed", "classify", "retrieve", "generate", "total"}
    assert completed[0]["status"] == 200 and completed[0]["path"] == "/v1/query"
    assert completed[0]["duration_ms"] > 0


@pytest.mark.parametrize("mode", ["vector", "text", "hybrid"])
def test_query_retrieval_mode_is_selectable(http: httpx.Client, mode: str) -> None:
    body = {"query": "How do I enable LoRA adapters in vLLM?", "route": "rag", "retrieval": {"mode": mode}}
    response = http.post("/v1/query", json=body)
    assert response.status_code == 200, response.text
    sources = response.json()["sources"]
    assert sources and [s["score"] for s in sources] == sorted((s["score"] for s in sources), reverse=True)
    if mode == "vector":
        assert all(0 < s["score"] <= 1 for s in sources)  # cosine similarity
    if mode == "hybrid":
        assert all(s["score"] <= round(2 / 61, 6) for s in sources)  # reciprocal rank fusion scores


def test_query_filters_restrict_the_sources(http: httpx.Client) -> None:
    question = "How do I enable LoRA adapters in vLLM?"
    unfiltered = http.post("/v1/query", json={"query": question, "route": "rag", "top_k": 8}).json()["sources"]
    other = unfiltered[-1]["document_id"]
    body = {"query": question, "route": "rag", "top_k": 3, "retrieval": {"filters": {"doc_id": [other]}}}
    filtered = http.post("/v1/query", json=body).json()["sources"]
    assert filtered and {s["document_id"] for s in filtered} == {other}


@pytest.mark.parametrize(
    ("retrieval", "reason"),
    [
        ({"mode": "fuzzy"}, "mode"),
        ({"filters": {"author": "x"}}, "author"),
        ({"filters": {"doc_id": []}}, "doc_id"),
        ({"filters": {"doc_id": 5}}, "doc_id"),
    ],
)
def test_bad_retrieval_options_are_400(http: httpx.Client, retrieval: dict, reason: str) -> None:
    for stream in (False, True):  # a streamed request fails before its stream starts
        response = http.post("/v1/query", json={"query": "What is LoRA?", "retrieval": retrieval, "stream": stream})
        assert response.status_code == 400, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert reason in response.text


def test_stream_without_an_llm_answers_extractively(http: httpx.Client) -> None:
    body = {"query": "What does the alpha parameter of LoRA control?", "stream": True}
    response = http.post("/v1/query", json=body)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    names = [line.removeprefix("event: ") for line in response.text.splitlines() if line.startswith("event: ")]
    assert names == ["decision", "answer", "delta", "done"]


def test_a_request_may_carry_its_own_knob_recorded_in_its_routing_record(live: LiveService, http: httpx.Client) -> None:
    question = "Which film came out first, the one directed by the director of Alien or Blade Runner?"
    live_route = http.post("/v1/route", json={"query": question}).json()
    cheapest = http.post("/v1/route", json={"query": question, "cost_weight": 10}).json()
    best = http.post(
        "/v1/query", json={"query": question, "cost_weight": 0}, headers={"X-Request-ID": "knob-check-1"}
    ).json()
    assert live_route["knob_source"] == "live"
    assert (cheapest["knob_source"], cheapest["cost_weight"], cheapest["route"]) == ("request", 10, "ft")
    assert best["knob_source"] == "request" and best["route"] == max(best["scores"], key=best["scores"].get)
    assert best["thresholds_version"] == live_route["thresholds_version"]  # the live thresholds, its own knob
    record = next(e for e in live.events("route_decided") if e.get("request_id") == "knob-check-1")
    assert (record["knob_source"], record["cost_weight"], record["route"]) == ("request", 0, best["route"])


async def test_concurrent_requests_share_forward_passes_and_decide_as_alone(live: LiveService) -> None:
    import asyncio
    import json

    from tests.conftest import DATA

    rows = [json.loads(line) for line in (DATA / "outcomes_sample.jsonl").read_text().splitlines()]
    questions = [row["question"] for row in rows[:24]]
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as client:
        alone = [(await client.post("/v1/route", json={"query": q})).json() for q in questions]
        together = await asyncio.gather(*(client.post("/v1/route", json={"query": q}) for q in questions))
    assert all(r.status_code == 200 for r in together)
    for single, shared in zip(alone, [r.json() for r in together], strict=True):
        assert shared["route"] == single["route"]
        for route, p in single["scores"].items():
            assert abs(shared["scores"][route] - p) <= 2e-4  # padding in a batch moves the 4th decimal at most
    ids = {r.json()["request_id"] for r in together}
    sizes = [e["batch_size"] for e in live.events("route_decided") if e.get("request_id") in ids]
    assert len(sizes) == len(questions)
    assert max(sizes) > 1  # they shared forward passes
