"""The fault matrix: the real app answering through a fake vLLM on a real socket that fails on command.

Each fault leads to the documented retry, fallback or error, and nothing waits past its timeout. The fake's faults
are consumed one per HTTP request it receives (the client's retries included), in order.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from router.lib.settings import Settings
from tests.fakes.vllm import FakeVLLM
from tests.fakes.vllm_server import fake_vllm_server
from tests.integration.conftest import LiveService, serve, sse_events

QUESTION = "How do I serve several LoRA adapters with vLLM?"
LLM = {
    "base_model": "base",
    "ft_model": "ft",
    "retry_attempts": 2,
    "connect_timeout": 1.0,
    "read_timeout": 1.0,
    "total_timeout": 2.0,
}


@pytest.fixture(scope="module")
def lancedb_uri(corpus_uri: str) -> str:
    return corpus_uri


@pytest.fixture(scope="module")
def fake() -> FakeVLLM:
    return FakeVLLM(
        base_model="base", adapters={"ft": "/adapters/ft"}, reply="Use --enable-lora and name each adapter."
    )


@pytest.fixture(scope="module")
def fake_url(fake: FakeVLLM) -> Iterator[str]:
    with fake_vllm_server(fake) as url:
        yield url


def start_service(fake_url: str, lancedb_uri: str, **llm: Any) -> Any:
    breaker = llm.pop("breaker", {"min_calls": 1000})  # out of the way unless a test is about it
    settings = Settings(
        retrieval={"uri": lancedb_uri},
        llm={"base_url": fake_url, **LLM, **llm},
        breaker=breaker,
        log={"format": "json"},
    )
    return serve(settings)


@pytest.fixture(scope="module")
def service(fake_url: str, lancedb_uri: str) -> Iterator[LiveService]:
    with start_service(fake_url, lancedb_uri) as service:
        yield service


@pytest.fixture(autouse=True)
def clean(fake: FakeVLLM) -> Iterator[None]:
    fake.faults.clear()
    fake.requests.clear()
    yield
    fake.faults.clear()


def ask(service: LiveService, route: str, **extra: Any) -> httpx.Response:
    body = {"query": QUESTION, "route": route, **extra}
    return httpx.post(f"{service.url}/v1/query", json=body, timeout=30)


def models_called(fake: FakeVLLM) -> list[str]:
    return [json.loads(r.content)["model"] for r in fake.requests if r.url.path.endswith("/chat/completions")]


def last_record(service: LiveService) -> dict[str, Any]:
    return service.events("route_decided")[-1]


def test_no_fault_answers_through_the_decided_route(service: LiveService, fake: FakeVLLM) -> None:
    body = ask(service, "both").json()
    assert (body["answered_by"], body["model"], body["fallback"]) == ("both", "ft", None)
    assert body["answer"] == fake.reply and body["sources"]
    assert models_called(fake) == ["ft"]


@pytest.mark.parametrize(
    ("route", "faults", "calls", "answered_by", "reason"),
    [
        # 5xx is retried (2 tries), then ft is dead for this request: both (same model) is skipped, rag answers.
        ("ft", [("status", 500), ("status", 500)], ["ft", "ft", "base"], "rag", "upstream_error"),
        # a 5xx that passes on retry is no fallback at all
        ("ft", [("status", 503)], ["ft", "ft"], "ft", None),
        # 404 for the adapter (unloaded since startup): not retried, a configuration error
        ("ft", [("status", 404)], ["ft", "base"], "rag", "model_not_found"),
        # 429 twice: retried, then the next route (both, on the fine-tuned model) answers
        ("rag", [("status", 429), ("status", 429)], ["base", "base", "ft"], "both", "upstream_error"),
        # 400 (for example a prompt too long for the base model): not retried, falls back
        ("rag", [("status", 400)], ["base", "ft"], "both", "upstream_error"),
        # a hang: cut off by the 1 s read timeout and retried once
        ("both", [("delay", 5)], ["ft", "ft"], "both", None),
        # hanging twice: the 2 s total deadline ends the call; ft is dead here, so rag answers
        ("both", [("delay", 5), ("delay", 5)], ["ft", "ft", "base"], "rag", "timeout"),
        # 401 (wrong API key): not retried; the other model fails the same way; extractive answers
        ("rag", [("status", 401), ("status", 401)], ["base", "ft"], "extractive", "upstream_error"),
    ],
)
def test_fault_is_retried_or_falls_back(
    service: LiveService,
    fake: FakeVLLM,
    route: str,
    faults: list[tuple[Any, ...]],
    calls: list[str],
    answered_by: str,
    reason: str | None,
) -> None:
    fake.faults.extend(faults)
    start = time.monotonic()
    response = ask(service, route)
    elapsed = time.monotonic() - start
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["route"] == route and body["answered_by"] == answered_by
    assert models_called(fake) == calls
    if reason is None:
        assert body["fallback"] is None
    else:
        assert body["fallback"]["from"] == route and body["fallback"]["to"] == answered_by
        assert body["fallback"]["reason"] == reason and body["fallback"]["detail"]
        record = last_record(service)
        assert record["fallback"] == {"from": route, "to": answered_by, "reason": reason}
        assert record["failures"][0]["step"] == route
    assert bool(body["sources"]) is (answered_by != "ft")
    assert elapsed < 2.0 * LLM["total_timeout"] + 3  # nothing waits past the deadlines of the steps it tried


def test_every_step_failing_is_a_503_listing_each_failure(fake_url: str, lancedb_uri: str, fake: FakeVLLM) -> None:
    with start_service(fake_url, lancedb_uri, fallbacks={"ft": ["rag"]}) as service:
        fake.faults.extend([("status", 500)] * 4)
        response = ask(service, "ft")
        assert response.status_code == 503
        body = response.json()
        assert [(a["step"], a["backend"], a["reason"]) for a in body["attempts"]] == [
            ("ft", "llm:ft", "upstream_error"),
            ("rag", "llm:base", "upstream_error"),
        ]
        assert body["request_id"] == response.headers["x-request-id"]
        record = last_record(service)
        assert record["answered_by"] is None and len(record["failures"]) == 2


def stream(service: LiveService, route: str) -> list[tuple[str, Any]]:
    body = {"query": QUESTION, "route": route, "stream": True}
    with httpx.stream("POST", f"{service.url}/v1/query", json=body, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        response.read()
    return sse_events(response.text)


def test_stream_sends_the_decision_first_then_the_answer(service: LiveService, fake: FakeVLLM) -> None:
    events = stream(service, "rag")
    names = [name for name, _ in events]
    assert names[:2] == ["decision", "answer"] and names[-1] == "done" and "error" not in names
    assert events[0][1]["route"] == "rag" and set(events[0][1]["scores"]) == {"ft", "rag", "both"}
    answer = events[1][1]
    assert answer["answered_by"] == "rag" and answer["model"] == "base" and answer["fallback"] is None
    assert answer["sources"]
    text = "".join(data["text"] for name, data in events if name == "delta")
    assert text == fake.reply
    assert events[-1][1]["answer_chars"] == len(text)


def test_stream_falls_back_before_its_first_byte(service: LiveService, fake: FakeVLLM) -> None:
    fake.faults.extend([("status", 500), ("status", 500)])
    events = dict(stream(service, "rag"))
    assert events["answer"]["answered_by"] == "both"
    assert events["answer"]["fallback"]["reason"] == "upstream_error"
    assert "error" not in events


def test_stream_stalled_before_its_first_token_times_out_and_falls_back(service: LiveService, fake: FakeVLLM) -> None:
    fake.faults.append(("stall", 5))  # the role chunk (no text yet), then silence past the 1 s read timeout
    start = time.monotonic()
    events = dict(stream(service, "rag"))
    assert time.monotonic() - start < 4
    assert events["answer"]["answered_by"] == "both" and events["answer"]["fallback"]["reason"] == "timeout"
    assert models_called(fake) == ["base", "ft"]


def test_stream_error_after_the_first_token_is_an_error_event(service: LiveService, fake: FakeVLLM) -> None:
    fake.faults.append(("stream_error", "Internal server error"))
    events = stream(service, "ft")
    names = [name for name, _ in events]
    assert names[:3] == ["decision", "answer", "delta"] and names[-2:] == ["error", "done"]
    error = dict(events)["error"]
    assert error["status"] == 502 and error["reason"] == "upstream_error" and "broke off" in error["detail"]


def test_stream_cut_mid_body_is_an_error_event(service: LiveService, fake: FakeVLLM) -> None:
    fake.faults.append(("drop", 2))  # the role chunk and the first token, then the connection is cut
    events = stream(service, "ft")
    error = dict(events)["error"]
    assert error["reason"] in {"unavailable", "upstream_error"}
    assert [name for name, _ in events][-2:] == ["error", "done"]


def test_circuit_opens_after_failures_and_closes_after_a_probe(fake_url: str, lancedb_uri: str, fake: FakeVLLM) -> None:
    breaker = {"min_calls": 2, "failure_ratio": 0.5, "window_seconds": 30, "cooldown_seconds": 1.5}
    with start_service(fake_url, lancedb_uri, retry_attempts=1, breaker=breaker) as service:
        fake.faults.extend([("status", 500), ("delay", 0), ("status", 500)])  # base fails, ft answers; twice
        for _ in range(2):
            assert ask(service, "rag").json()["answered_by"] == "both"
        fake.requests.clear()
        body = ask(service, "rag").json()  # open: the base model is not called at all
        assert body["fallback"]["reason"] == "circuit_open" and body["answered_by"] == "both"
        assert models_called(fake) == ["ft"]
        ready = httpx.get(f"{service.url}/ready", timeout=10).json()
        assert ready["status"] == "degraded" and "llm:base open" in ready["checks"]["circuits"]
        time.sleep(1.6)  # cool-down over: one probe goes through and closes it
        body = ask(service, "rag").json()
        assert body["answered_by"] == "rag" and body["fallback"] is None
        assert httpx.get(f"{service.url}/ready", timeout=10).json()["status"] == "ready"


def test_saturated_backend_fails_fast_with_retry_after(fake_url: str, lancedb_uri: str, fake: FakeVLLM) -> None:
    settings = {"max_concurrency": 1, "queue_timeout": 0.1, "fallbacks": {"ft": []}}
    with start_service(fake_url, lancedb_uri, **settings) as service:
        fake.faults.append(("delay", 1.5))
        slow: dict[str, httpx.Response] = {}
        thread = threading.Thread(target=lambda: slow.setdefault("r", ask(service, "ft")))
        thread.start()
        time.sleep(0.5)  # the slow call holds the only slot
        start = time.monotonic()
        response = ask(service, "ft")
        assert time.monotonic() - start < 1.0  # it did not queue behind the slow call
        thread.join()
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert response.json()["attempts"][0]["reason"] == "saturated"
        assert slow["r"].status_code == 200


async def test_startup_refuses_a_model_the_server_does_not_serve(fake_url: str, lancedb_uri: str) -> None:
    from router.lib.errors import ConfigurationError
    from router.server.resources import open_resources

    settings = Settings(retrieval={"uri": lancedb_uri}, llm={"base_url": fake_url, **LLM, "ft_model": "typo-ft"})
    with pytest.raises(ConfigurationError, match=r"does not serve 'typo-ft'.*it serves: base, ft"):
        async with open_resources(settings):
            pass


def test_a_stream_cut_after_its_decision_still_gets_a_routing_record(service: LiveService, fake: FakeVLLM) -> None:
    """The client read the decision and its request id, then left while the model was still thinking: the record
    is written, with a status that says the client left (not answered, not failed)."""
    fake.faults.append(("delay", 3))
    body = {"query": QUESTION, "route": "ft", "stream": True}
    with httpx.stream("POST", f"{service.url}/v1/query", json=body, timeout=30) as response:
        request_id = response.headers["x-request-id"]
        first = next(response.iter_lines())
        assert first == "event: decision"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        mine = [e for e in service.events("route_decided") if e.get("request_id") == request_id]
        if mine:
            break
        time.sleep(0.1)
    assert [e["status"] for e in mine] == ["client_left"], mine
    assert mine[0]["route"] == "ft" and mine[0]["endpoint"] == "query"
