"""The OpenAI-compatible front door, driven by the official ``openai`` client against the running app, with a fake
vLLM behind it on a real socket."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from router.lib.settings import Settings
from tests.fakes.vllm import FakeVLLM
from tests.fakes.vllm_server import fake_vllm_server
from tests.integration.conftest import LiveService, serve

QUESTION = "How do I serve several LoRA adapters with vLLM?"


@pytest.fixture(scope="module")
def fake() -> FakeVLLM:
    return FakeVLLM(base_model="base-model", adapters={"support-ft": "/adapters/ft"}, reply="Name each adapter.")


@pytest.fixture(scope="module")
def service(corpus_uri: str, fake: FakeVLLM) -> Iterator[LiveService]:
    with fake_vllm_server(fake) as url:
        llm = {"base_url": url, "base_model": "base-model", "ft_model": "support-ft", "retry_attempts": 1}
        with serve(Settings(retrieval={"uri": corpus_uri}, llm=llm, log={"format": "json"})) as live:
            yield live


@pytest.fixture
def client(service: LiveService, fake: FakeVLLM) -> Iterator[openai.OpenAI]:
    fake.faults.clear()
    fake.requests.clear()
    with openai.OpenAI(base_url=f"{service.url}/v1", api_key="unused", max_retries=0, timeout=30) as client:
        yield client


def upstream(fake: FakeVLLM) -> list[dict[str, Any]]:
    return [json.loads(r.content) for r in fake.requests if r.url.path.endswith("/chat/completions")]


def test_router_model_decides_and_says_how(client: openai.OpenAI, fake: FakeVLLM) -> None:
    completion = client.chat.completions.create(model="router", messages=[{"role": "user", "content": QUESTION}])
    assert completion.object == "chat.completion" and completion.id.startswith("chatcmpl-")
    assert completion.choices[0].message.content == fake.reply and completion.choices[0].finish_reason == "stop"
    router = (completion.model_extra or {})["router"]
    assert router["route_source"] == "policy" and router["route"] in {"ft", "rag", "both"}
    assert set(router["scores"]) == {"ft", "rag", "both"} and router["fallback"] is None
    (sent,) = upstream(fake)
    assert (
        completion.model
        == sent["model"]
        == {"ft": "support-ft", "rag": "base-model", "both": "support-ft"}[router["route"]]
    )
    assert completion.usage is not None and completion.usage.total_tokens > 0
    assert router["knob_source"] == "live"


def test_the_router_field_carries_a_request_knob(client: openai.OpenAI, fake: FakeVLLM) -> None:
    completion = client.chat.completions.create(
        model="router", messages=[{"role": "user", "content": QUESTION}], extra_body={"router": {"cost_weight": 10}}
    )
    router = (completion.model_extra or {})["router"]
    assert (router["knob_source"], router["cost_weight"], router["route"]) == ("request", 10, "ft")


@pytest.mark.parametrize(
    ("model", "route", "upstream_model", "with_sources"),
    [
        ("rag", "rag", "base-model", True),
        ("base-model", "rag", "base-model", True),
        ("support-ft", "ft", "support-ft", False),
        ("both", "both", "support-ft", True),
    ],
)
def test_model_name_forces_a_route(
    client: openai.OpenAI, fake: FakeVLLM, model: str, route: str, upstream_model: str, with_sources: bool
) -> None:
    completion = client.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": "Answer in one sentence."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": QUESTION},
        ],
        max_tokens=7,
        temperature=0.5,
        top_p=0.9,
        stop=["\n\n"],
    )
    router = (completion.model_extra or {})["router"]
    assert router["route"] == route and router["route_source"] == "request" and router["answered_by"] == route
    assert bool(router["sources"]) is with_sources
    (sent,) = upstream(fake)
    assert sent["model"] == upstream_model
    assert (sent["max_tokens"], sent["temperature"], sent["top_p"], sent["stop"]) == (7, 0.5, 0.9, ["\n\n"])
    roles = [m["role"] for m in sent["messages"]]
    assert roles == ["system", "system", "user", "assistant", "user"]  # ours, then the conversation
    assert sent["messages"][1]["content"] == "Answer in one sentence."
    last = sent["messages"][-1]["content"]
    assert last.endswith(QUESTION) and ("<sources>" in last) is with_sources
    numbered = [f"[{i}]" for i in range(1, len(router["sources"]) + 1)]
    assert all(n in last for n in numbered)  # the sources the response lists are the ones the prompt used


def test_stream_carries_the_decision_first_then_the_answer(client: openai.OpenAI, fake: FakeVLLM) -> None:
    stream = client.chat.completions.create(model="rag", messages=[{"role": "user", "content": QUESTION}], stream=True)
    chunks = list(stream)
    first = chunks[0]
    assert first.choices[0].delta.role == "assistant"
    router = (first.model_extra or {})["router"]
    assert router["route"] == "rag" and router["answered_by"] == "rag" and router["sources"]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == fake.reply
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert {c.id for c in chunks} == {first.id} and {c.model for c in chunks} == {"base-model"}


def test_fallback_is_reported_in_the_router_field(client: openai.OpenAI, fake: FakeVLLM) -> None:
    fake.faults.append(("status", 500))  # one try (retry_attempts=1): base fails, both answers
    completion = client.chat.completions.create(model="rag", messages=[{"role": "user", "content": QUESTION}])
    router = (completion.model_extra or {})["router"]
    assert router["answered_by"] == "both" and router["fallback"]["reason"] == "upstream_error"
    assert completion.model == "support-ft"


def test_error_inside_the_stream_raises_in_the_client(client: openai.OpenAI, fake: FakeVLLM) -> None:
    fake.faults.append(("stream_error", "Internal server error"))
    stream = client.chat.completions.create(model="ft", messages=[{"role": "user", "content": QUESTION}], stream=True)
    with pytest.raises(openai.APIError, match="broke off"):
        list(stream)


def test_errors_are_openai_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": QUESTION}])
    assert missing.value.code == "model_not_found" and "router" in missing.value.message
    with pytest.raises(openai.BadRequestError, match="last message must come from the user"):
        client.chat.completions.create(model="router", messages=[{"role": "assistant", "content": "Hi"}])
    with pytest.raises(openai.BadRequestError, match="tools"):
        client.chat.completions.create(
            model="router",
            messages=[{"role": "user", "content": QUESTION}],
            tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        )
    with pytest.raises(openai.BadRequestError, match="image_url"):
        client.chat.completions.create(
            model="router",
            messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}],
        )
    with pytest.raises(openai.BadRequestError, match="empty"):
        client.chat.completions.create(model="router", messages=[{"role": "user", "content": "   "}])


def test_llm_failing_everywhere_falls_back_to_extractive(client: openai.OpenAI, fake: FakeVLLM) -> None:
    fake.faults.extend([("status", 500)] * 2)  # rag (base) and both (ft) fail; ft is then skipped; extractive answers
    completion = client.chat.completions.create(model="rag", messages=[{"role": "user", "content": QUESTION}])
    assert (completion.model_extra or {})["router"]["answered_by"] == "extractive"
    assert completion.model == "extractive" and completion.usage is None


def test_models_lists_the_router_and_the_forcing_names(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == ["router", "auto", "ft", "rag", "both", "base-model", "support-ft"]
