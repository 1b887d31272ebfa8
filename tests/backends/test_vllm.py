"""The OpenAI-compatible client against a fake that copies vLLM 0.33's responses (tests/fakes/vllm.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from backends.errors import BackendTimeout, BackendUnavailable, ModelNotFound, UpstreamError
from backends.vllm import ChatClient, ChatMessage, raise_for_error
from tests.fakes.vllm import FakeVLLM

BASE = "meta-llama/Llama-3.1-8B-Instruct"
MESSAGES = [ChatMessage("user", "What is the capital of France?")]


@pytest.fixture
def fake() -> FakeVLLM:
    return FakeVLLM(base_model=BASE, adapters={"support-ft": "/adapters/support-ft"}, api_key="secret")


@pytest.fixture
async def client(fake: FakeVLLM) -> AsyncIterator[ChatClient]:
    async with httpx.AsyncClient(transport=fake.transport()) as http:
        yield ChatClient(http, "http://vllm:8000/v1", api_key="secret")


async def test_chat_completion_is_parsed(client: ChatClient, fake: FakeVLLM) -> None:
    completion = await client.chat("support-ft", MESSAGES, max_tokens=16, temperature=0.0)
    assert completion.text == fake.reply
    assert completion.model == "support-ft"
    assert completion.finish_reason == "stop"
    assert completion.prompt_tokens and completion.completion_tokens
    sent = fake.requests[-1]
    assert sent.url.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer secret"


async def test_models_list_shows_the_adapter_with_its_base_as_parent(client: ChatClient) -> None:
    models = {m["id"]: m for m in await client.list_models()}
    assert models[BASE]["parent"] is None
    assert models["support-ft"]["parent"] == BASE


async def test_unknown_adapter_is_a_configuration_error_naming_the_model(client: ChatClient) -> None:
    with pytest.raises(ModelNotFound, match="'support-v2'") as caught:
        await client.chat("support-v2", MESSAGES, max_tokens=16, temperature=0.0)
    assert caught.value.status == 404
    assert caught.value.error_type == "NotFoundError"
    assert caught.value.param == "model"
    assert "does not exist" in str(caught.value)


async def test_bad_request_carries_vllm_error_fields(fake: FakeVLLM) -> None:
    async with httpx.AsyncClient(transport=fake.transport()) as http:
        response = await http.post(
            "http://vllm/v1/chat/completions", json={"model": BASE}, headers={"authorization": "Bearer secret"}
        )
    with pytest.raises(UpstreamError, match="Field required") as caught:
        raise_for_error(response, BASE)
    assert not isinstance(caught.value, ModelNotFound)
    assert caught.value.status == 400
    assert caught.value.error_type == "Bad Request"
    assert caught.value.param == "body.messages"


async def test_plain_string_401_body(fake: FakeVLLM) -> None:
    async with httpx.AsyncClient(transport=fake.transport()) as http:
        client = ChatClient(http, "http://vllm:8000/v1", api_key="wrong")
        with pytest.raises(UpstreamError, match="Unauthorized") as caught:
            await client.chat(BASE, MESSAGES, max_tokens=4, temperature=0.0)
    assert caught.value.status == 401


@pytest.mark.parametrize(
    ("fault", "error", "status"),
    [
        (("status", 503), UpstreamError, 503),
        (("status", 500), UpstreamError, 500),
        (("status", 429, {"Retry-After": "1"}), UpstreamError, 429),
    ],
)
async def test_server_errors_keep_status_and_message(
    client: ChatClient, fake: FakeVLLM, fault: tuple, error: type[UpstreamError], status: int
) -> None:
    fake.faults.append(fault)
    with pytest.raises(error) as caught:
        await client.chat(BASE, MESSAGES, max_tokens=4, temperature=0.0)
    assert caught.value.status == status
    assert str(caught.value)


async def test_busy_engine_503_message_is_vllms(client: ChatClient, fake: FakeVLLM) -> None:
    fake.faults.append(("status", 503))
    with pytest.raises(UpstreamError, match="busy") as caught:
        await client.chat(BASE, MESSAGES, max_tokens=4, temperature=0.0)
    assert caught.value.error_type == "Service Unavailable"


async def test_connection_refused_and_timeout(client: ChatClient, fake: FakeVLLM) -> None:
    fake.faults.append(("connect_error",))
    with pytest.raises(BackendUnavailable, match="unreachable"):
        await client.chat(BASE, MESSAGES, max_tokens=4, temperature=0.0)
    fake.faults.append(("read_timeout",))
    with pytest.raises(BackendTimeout, match="timed out"):
        await client.list_models()
