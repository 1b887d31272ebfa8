"""The OpenAI-compatible client against a fake that copies vLLM 0.33's responses (tests/fakes/vllm.py)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import anyio
import httpx
import pytest

from backends.errors import BackendTimeout, BackendUnavailable, ModelNotFound, UpstreamError
from backends.vllm import (
    ChatClient,
    ChatMessage,
    Timeouts,
    raise_for_error,
    retry_after_seconds,
    sse_data,
    stream_delta,
)
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


class Sleeps(list[float]):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def retrying(fake: FakeVLLM, sleeps: Sleeps) -> AsyncIterator[ChatClient]:
    """A client whose backoff waits are recorded instead of slept."""
    async with httpx.AsyncClient(transport=fake.transport()) as http:
        yield ChatClient(http, "http://vllm:8000/v1", api_key="secret", sleep=sleeps)


RETRIED = [
    ([("status", 503)], 2),
    ([("status", 500), ("status", 502)], 3),
    ([("status", 408)], 2),
    ([("status", 429)], 2),
    ([("connect_error",)], 2),
    ([("read_timeout",), ("read_timeout",)], 3),
]


@pytest.mark.parametrize(("faults", "requests"), RETRIED)
async def test_retryable_failures_are_retried_with_jittered_backoff(
    retrying: ChatClient, fake: FakeVLLM, sleeps: Sleeps, faults: list[tuple], requests: int
) -> None:
    fake.faults.extend(faults)
    completion = await retrying.chat(BASE, MESSAGES, max_tokens=8, temperature=0.0)
    assert completion.text == fake.reply
    assert len(fake.requests) == requests and len(sleeps) == requests - 1
    ceilings = [0.25 * 2**i for i in range(len(sleeps))]  # full jitter: uniform in [0, base * 2^(n-1)]
    assert all(0 <= wait <= ceiling for wait, ceiling in zip(sleeps, ceilings, strict=True))


@pytest.mark.parametrize(
    ("faults", "error", "status"),
    [
        ([("status", 503)] * 3, UpstreamError, 503),
        ([("connect_error",)] * 3, BackendUnavailable, None),
        ([("read_timeout",)] * 3, BackendTimeout, None),
    ],
)
async def test_retries_give_up_after_the_last_attempt(
    retrying: ChatClient, fake: FakeVLLM, sleeps: Sleeps, faults: list[tuple], error: type, status: int | None
) -> None:
    fake.faults.extend(faults)
    with pytest.raises(error) as caught:
        await retrying.chat(BASE, MESSAGES, max_tokens=8, temperature=0.0)
    assert len(fake.requests) == 3 and len(sleeps) == 2
    assert getattr(caught.value, "status", None) == status


@pytest.mark.parametrize(("fault", "status"), [(("status", 400), 400), (("status", 401), 401), (("status", 403), 403)])
async def test_other_client_errors_are_never_retried(
    retrying: ChatClient, fake: FakeVLLM, sleeps: Sleeps, fault: tuple, status: int
) -> None:
    fake.faults.append(fault)
    with pytest.raises(UpstreamError) as caught:
        await retrying.chat(BASE, MESSAGES, max_tokens=8, temperature=0.0)
    assert caught.value.status == status and len(fake.requests) == 1 and sleeps == []


async def test_unknown_adapter_is_not_retried(retrying: ChatClient, fake: FakeVLLM, sleeps: Sleeps) -> None:
    with pytest.raises(ModelNotFound, match="'support-v2'"):
        await retrying.chat("support-v2", MESSAGES, max_tokens=8, temperature=0.0)
    assert len(fake.requests) == 1 and sleeps == []


@pytest.mark.parametrize(("header", "wait"), [("1", 1.0), ("2.5", 2.5), ("120", 10.0)])
async def test_retry_after_is_honoured_and_capped(
    retrying: ChatClient, fake: FakeVLLM, sleeps: Sleeps, header: str, wait: float
) -> None:
    fake.faults.append(("status", 429, {"Retry-After": header}))
    await retrying.chat(BASE, MESSAGES, max_tokens=8, temperature=0.0)
    assert sleeps == [wait]


def test_retry_after_as_an_http_date() -> None:
    later = datetime.now(UTC) + timedelta(seconds=30)
    response = httpx.Response(503, headers={"Retry-After": format_datetime(later, usegmt=True)})
    assert 28 <= (retry_after_seconds(response) or 0) <= 30
    assert retry_after_seconds(httpx.Response(503, headers={"Retry-After": "soon"})) is None
    assert retry_after_seconds(httpx.Response(503)) is None


async def test_a_slow_server_hits_the_total_deadline_without_hanging(fake: FakeVLLM) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(30)
        return fake.handle(request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(slow)) as http:
        client = ChatClient(http, "http://vllm:8000/v1", api_key="secret", timeouts=Timeouts(1.0, 1.0, 0.3))
        started = time.monotonic()
        with pytest.raises(BackendTimeout, match="exceeded 0.3s"):
            await client.chat(BASE, MESSAGES, max_tokens=8, temperature=0.0)
    assert time.monotonic() - started < 2.0


async def test_streaming_yields_the_deltas_until_done(retrying: ChatClient, fake: FakeVLLM) -> None:
    deltas = [d async for d in retrying.chat_stream("support-ft", MESSAGES, max_tokens=16, temperature=0.0)]
    assert len(deltas) > 1 and "".join(deltas) == fake.reply
    assert json.loads(fake.requests[-1].read())["stream"] is True


async def test_a_stream_is_retried_before_its_first_byte(retrying: ChatClient, fake: FakeVLLM, sleeps: Sleeps) -> None:
    fake.faults.append(("status", 503))
    deltas = [d async for d in retrying.chat_stream(BASE, MESSAGES, max_tokens=16, temperature=0.0)]
    assert "".join(deltas) == fake.reply and len(sleeps) == 1


async def test_an_error_inside_a_200_stream_is_raised_with_its_message(retrying: ChatClient, fake: FakeVLLM) -> None:
    fake.faults.append(("stream_error", "engine died"))
    received: list[str] = []
    with pytest.raises(UpstreamError, match="engine died") as caught:
        async for delta in retrying.chat_stream(BASE, MESSAGES, max_tokens=16, temperature=0.0):
            received.append(delta)
    assert received  # the chunk before the error arrived
    assert caught.value.error_type == "InternalServerError" and caught.value.status == 500
    assert len(fake.requests) == 1  # a stream that started is not retried


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["data: a", "", "data: b", ""], ["a", "b"]),
        ([": comment", "event: x", "data: one", "data: two", "", "data: [DONE]"], ["one\ntwo", "[DONE]"]),
        (["data:no-space", ""], ["no-space"]),
    ],
)
async def test_server_sent_event_parsing(lines: list[str], expected: list[str]) -> None:
    async def source() -> AsyncIterator[str]:
        for line in lines:
            yield line

    assert [data async for data in sse_data(source())] == expected


def test_stream_error_events_of_other_servers() -> None:
    with pytest.raises(UpstreamError, match="boom"):
        stream_delta('{"error": "boom"}')  # transformers serve
    assert stream_delta('{"choices": [{"delta": {"role": "assistant"}}]}') == ""
    assert stream_delta('{"choices": [], "usage": {"total_tokens": 3}}') == ""
