"""The service answering through a real OpenAI-compatible server, and failing clearly when it is down."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from router.settings import Settings
from tests.integration.conftest import LiveService, free_port, ingest_corpus, serve


@pytest.fixture(scope="module")
def lancedb_uri(tmp_path_factory: pytest.TempPathFactory, embedder, corpus_dir: Path) -> str:
    uri = str(tmp_path_factory.mktemp("lancedb-llm"))
    ingest_corpus(Settings(retrieval={"uri": uri}), embedder, corpus_dir)
    return uri


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


def test_llm_down_is_a_clear_503(lancedb_uri: str) -> None:
    closed_port = free_port()  # nothing listens there
    settings = Settings(
        retrieval={"uri": lancedb_uri},
        llm={"base_url": f"http://127.0.0.1:{closed_port}/v1", "base_model": "base", "ft_model": "ft"},
        log={"format": "json"},
    )
    with serve(settings) as live:
        response = httpx.post(f"{live.url}/v1/query", json={"query": "What is LoRA?"}, timeout=30)
        assert response.status_code == 503
        body = response.json()
        assert body["backend"] == "llm" and "unreachable" in body["detail"]
        decision = httpx.post(f"{live.url}/v1/route", json={"query": "What is LoRA?"}, timeout=30)
        assert decision.status_code == 200  # deciding needs no LLM
