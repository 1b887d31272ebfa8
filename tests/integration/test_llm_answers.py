"""The service answering through a real OpenAI-compatible server, and failing clearly when it is down."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from router.lib.settings import Settings
from tests.integration.conftest import LiveService, free_port, serve, sse_events


@pytest.fixture(scope="module")
def lancedb_uri(corpus_uri: str) -> str:
    return corpus_uri


@pytest.fixture(scope="module")
def llm_service(tiny_llm_server: str, lancedb_uri: str) -> Iterator[LiveService]:
    settings = Settings(
        retrieval={"uri": lancedb_uri},
        llm={"base_url": tiny_llm_server, "base_model": "tiny-llama", "ft_model": "tiny-llama-ft", "max_tokens": 8},
        log={"format": "json"},
    )
    with serve(settings) as service:
        yield service


@pytest.mark.llm_server
@pytest.mark.parametrize(
    ("route", "model", "retrieves"),
    [("ft", "tiny-llama-ft", False), ("rag", "tiny-llama", True), ("both", "tiny-llama-ft", True)],
)
def test_each_route_calls_its_model(llm_service: LiveService, route: str, model: str, retrieves: bool) -> None:
    response = httpx.post(f"{llm_service.url}/v1/query", json={"query": "What is LoRA?", "route": route}, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["generator"] == "llm" and body["model"] == model
    assert body["answer"]
    assert bool(body["sources"]) is retrieves
    assert body["timings_ms"]["generate"] > 0


def test_llm_down_falls_back_to_extractive_or_is_a_clear_503(lancedb_uri: str) -> None:
    closed_port = free_port()  # nothing listens there
    llm = {"base_url": f"http://127.0.0.1:{closed_port}/v1", "base_model": "base", "ft_model": "ft"}
    settings = Settings(retrieval={"uri": lancedb_uri}, llm=llm, log={"format": "json"})
    with serve(settings) as live:
        ready = httpx.get(f"{live.url}/ready", timeout=30).json()
        assert ready["status"] == "degraded" and ready["checks"]["llm"].startswith("unreachable")
        response = httpx.post(f"{live.url}/v1/query", json={"query": "What is LoRA?", "route": "rag"}, timeout=30)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["route"] == "rag" and body["answered_by"] == "extractive" and body["generator"] == "extractive"
        assert body["fallback"]["from"] == "rag" and body["fallback"]["to"] == "extractive"
        assert body["fallback"]["reason"] == "unavailable" and "unreachable" in body["fallback"]["detail"]
        assert body["sources"] and "[1]" in body["answer"]
        (record,) = live.events("route_decided")
        assert record["fallback"] == {"from": "rag", "to": "extractive", "reason": "unavailable"}
        assert [f["step"] for f in record["failures"]] == ["rag"]  # both and ft share the dead server: skipped
        decision = httpx.post(f"{live.url}/v1/route", json={"query": "What is LoRA?"}, timeout=30)
        assert decision.status_code == 200  # deciding needs no LLM

    no_fallback = Settings(retrieval={"uri": lancedb_uri}, llm=llm | {"fallbacks": {"ft": []}}, log={"format": "json"})
    with serve(no_fallback) as live:
        response = httpx.post(f"{live.url}/v1/query", json={"query": "What is LoRA?", "route": "ft"}, timeout=30)
        assert response.status_code == 503
        body = response.json()
        assert body["attempts"] == [
            {"step": "ft", "backend": "llm:ft", "reason": "unavailable", "detail": body["attempts"][0]["detail"]}
        ]
        assert "no route could answer" in body["detail"] and "Retry-After" not in response.headers


@pytest.mark.llm_server
def test_router_label_against_a_real_server(
    tiny_llm_server: str, lancedb_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from models.outcomes import load_outcomes
    from router.cli import main
    from router.lib.settings import get_settings

    for name, value in {
        "BASE_URL": tiny_llm_server,
        "BASE_MODEL": "tiny-llama",
        "FT_MODEL": "tiny-llama-ft",
        "MAX_TOKENS": "8",
    }.items():
        monkeypatch.setenv(f"ROUTER_LLM__{name}", value)
    monkeypatch.setenv("ROUTER_RETRIEVAL__URI", lancedb_uri)
    get_settings.cache_clear()
    questions = tmp_path / "questions.jsonl"
    questions.write_text(
        '{"id": "a", "question": "What is LoRA?", "answers": ["low-rank adaptation"]}\n'
        '{"id": "b", "question": "What is vLLM?", "answers": ["an inference engine"]}\n'
    )
    out = tmp_path / "outcomes.jsonl"
    try:
        assert main(["label", "--questions", str(questions), "--out", str(out), "--quiet"]) == 0
    finally:
        get_settings.cache_clear()
    assert json.loads(capsys.readouterr().out)["labelled"] == 2
    outcomes = load_outcomes(out, "dev_500")
    assert len(outcomes) == 2 and outcomes.em.shape == (2, 3)
    assert all(isinstance(row["pred_zero"], str) and row["tokens_multi"] > 0 for row in outcomes.rows)


@pytest.mark.llm_server
def test_ready_confirms_both_models_on_the_real_server(llm_service: LiveService) -> None:
    ready = httpx.get(f"{llm_service.url}/ready", timeout=30).json()
    assert ready["status"] == "ready" and ready["checks"]["llm"] == "ok"


@pytest.mark.llm_server
@pytest.mark.parametrize(("route", "model"), [("ft", "tiny-llama-ft"), ("rag", "tiny-llama")])
def test_query_streams_from_the_real_server(llm_service: LiveService, route: str, model: str) -> None:
    body = {"query": "What is LoRA?", "route": route, "stream": True}
    with httpx.stream("POST", f"{llm_service.url}/v1/query", json=body, timeout=60) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response.read().decode())
    names = [name for name, _ in events]
    assert names[0] == "decision" and names[1] == "answer" and names[-1] == "done" and "error" not in names
    assert events[1][1]["model"] == model and events[1][1]["fallback"] is None
    deltas = [data["text"] for name, data in events if name == "delta"]
    assert deltas and events[-1][1]["answer_chars"] == len("".join(deltas))


@pytest.mark.llm_server
def test_openai_client_streams_through_the_router_from_the_real_server(llm_service: LiveService) -> None:
    import openai

    with openai.OpenAI(base_url=f"{llm_service.url}/v1", api_key="unused", max_retries=0, timeout=60) as client:
        chunks = list(
            client.chat.completions.create(
                model="both", messages=[{"role": "user", "content": "What is LoRA?"}], stream=True, max_tokens=6
            )
        )
        completion = client.chat.completions.create(
            model="router", messages=[{"role": "user", "content": "What is LoRA?"}]
        )
    router = (chunks[0].model_extra or {})["router"]
    assert router["answered_by"] == "both" and chunks[0].model == "tiny-llama-ft" and router["sources"]
    assert "".join(c.choices[0].delta.content or "" for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert (
        completion.choices[0].message.content and (completion.model_extra or {})["router"]["route_source"] == "policy"
    )
