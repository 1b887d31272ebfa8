"""Client for an OpenAI-compatible chat server, as vLLM serves it (``/v1/chat/completions``, ``/v1/models``).

The caller owns the ``httpx.AsyncClient`` (connection pool, transport), so tests can hand in an
``httpx.MockTransport``. Every error shape vLLM returns is turned into a :mod:`backends.errors` exception:
``{"error": {"message", "type", "param", "code"}}`` bodies, the older flat ``{"object": "error", ...}`` body, the
plain ``{"error": "Unauthorized"}`` 401, error events inside a 200 SSE stream, and non-JSON bodies from other servers.

Each call has connect/read timeouts and a total deadline (:class:`Timeouts`). Failures that may pass are retried
(:class:`RetryPolicy`): connection errors, timeouts, 408, 429 and 5xx; never other 4xx. The wait is exponential
backoff with full jitter, or the server's ``Retry-After`` when it sends one (capped). A stream is retried only until
its first byte arrives.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import anyio
import httpx

from backends.errors import BackendTimeout, BackendUnavailable, ModelNotFound, UpstreamError

BACKEND = "llm"


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None


def error_details(response: httpx.Response) -> dict[str, Any]:
    """``message``/``type``/``param``/``code`` from any error body vLLM (or a similar server) sends."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {"message": response.text.strip()[:500] or response.reason_phrase}
    return body_details(body)


def body_details(body: Any) -> dict[str, Any]:
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, str):  # vLLM's 401: {"error": "Unauthorized"}
            return {"message": error}
        if isinstance(error, dict) and "message" in error:
            return {key: error.get(key) for key in ("message", "type", "param", "code")}
        if "detail" in body:  # FastAPI-style servers
            return {"message": str(body["detail"])}
    return {"message": str(body)[:500]}


def raise_for_error(response: httpx.Response, model: str | None) -> None:
    if response.is_success:
        return
    details = error_details(response)
    message = str(details.get("message") or response.reason_phrase)
    error_class = ModelNotFound if response.status_code == 404 and model else UpstreamError
    if error_class is ModelNotFound:
        message = f"the LLM server does not serve model {model!r} (check the model/adapter name): {message}"
    raise error_class(
        message,
        backend=BACKEND,
        status=response.status_code,
        error_type=details.get("type"),
        param=details.get("param"),
        code=details.get("code"),
    )


RETRYABLE_STATUS = frozenset({408, 429})


@dataclass(frozen=True)
class Timeouts:
    """Seconds: to connect, between bytes of the answer, and for the whole call including retries."""

    connect: float = 2.0
    read: float = 60.0
    total: float = 120.0


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    base_delay: float = 0.25
    max_delay: float = 4.0
    max_retry_after: float = 10.0

    def delay(self, attempt: int, retry_after: float | None, rand: Callable[[], float] = random.random) -> float:
        """Wait before retry number ``attempt`` (1-based): the server's Retry-After, else full-jitter backoff."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        ceiling: float = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return rand() * ceiling


def retry_after_seconds(response: httpx.Response) -> float | None:
    """``Retry-After`` as seconds (it may be a number of seconds or an HTTP date); None when absent or invalid."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def _retryable(status: int) -> bool:
    return status in RETRYABLE_STATUS or status >= 500


def _transport_error(exc: httpx.TransportError, url: str) -> Exception:
    if isinstance(exc, httpx.TimeoutException):
        return BackendTimeout(f"LLM server timed out at {url} ({type(exc).__name__})", backend=BACKEND)
    return BackendUnavailable(f"LLM server unreachable at {url}: {str(exc) or type(exc).__name__}", backend=BACKEND)


@dataclass
class ChatClient:
    """Chat completions against one OpenAI-compatible base URL (ending in ``/v1``)."""

    http: httpx.AsyncClient
    base_url: str
    api_key: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeouts: Timeouts = field(default_factory=Timeouts)
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep

    def _request(self, method: str, path: str, payload: Any, timeouts: Timeouts) -> httpx.Request:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        timeout = httpx.Timeout(timeouts.read, connect=timeouts.connect)
        url = f"{self.base_url.rstrip('/')}{path}"
        return self.http.build_request(method, url, json=payload, headers=headers, timeout=timeout)

    @asynccontextmanager
    async def _response(
        self, method: str, path: str, model: str | None, payload: Any, timeouts: Timeouts, *, stream: bool
    ) -> AsyncIterator[httpx.Response]:
        """A successful response (retrying what may pass), open until the block ends."""
        for attempt in range(1, self.retry.attempts + 1):
            last = attempt == self.retry.attempts
            request = self._request(method, path, payload, timeouts)
            try:
                response = await self.http.send(request, stream=stream)
            except httpx.TransportError as exc:
                if last:
                    raise _transport_error(exc, str(request.url)) from exc
                await self.sleep(self.retry.delay(attempt, None))
                continue
            if response.is_success:
                try:
                    yield response
                finally:
                    await response.aclose()
                return
            await response.aread()
            await response.aclose()
            if last or not _retryable(response.status_code):
                raise_for_error(response, model)
            await self.sleep(self.retry.delay(attempt, retry_after_seconds(response)))

    async def _json(self, method: str, path: str, model: str | None, payload: Any, timeouts: Timeouts) -> Any:
        try:
            with anyio.fail_after(timeouts.total):
                async with self._response(method, path, model, payload, timeouts, stream=False) as response:
                    return response.json()
        except TimeoutError as exc:
            raise BackendTimeout(f"LLM call to {path} exceeded {timeouts.total}s", backend=BACKEND) from exc

    async def list_models(self) -> list[dict[str, Any]]:
        """The served models; vLLM lists each LoRA adapter with ``parent`` set to its base model."""
        body = await self._json("GET", "/models", None, None, self.timeouts)
        return list(body.get("data", []))

    @staticmethod
    def _payload(
        model: str, messages: list[ChatMessage], max_tokens: int, temperature: float, extra: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        return {
            **(extra or {}),
            "model": model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
        }

    async def chat(
        self,
        model: str,
        messages: list[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        timeouts: Timeouts | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Completion:
        """``extra``: more request fields (``top_p``, ``stop``, ``seed``...), sent as given."""
        payload = self._payload(model, messages, max_tokens, temperature, extra)
        body = await self._json("POST", "/chat/completions", model, payload, timeouts or self.timeouts)
        try:
            choice = body["choices"][0]
            usage = body.get("usage") or {}
            return Completion(
                text=str(choice["message"].get("content") or ""),
                model=str(body.get("model", model)),
                finish_reason=choice.get("finish_reason"),
                prompt_tokens=usage.get("prompt_tokens"),
                completion_tokens=usage.get("completion_tokens"),
            )
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise UpstreamError(f"malformed chat completion: {exc!r}", backend=BACKEND, status=200) from exc

    async def chat_stream(
        self,
        model: str,
        messages: list[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        timeouts: Timeouts | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[str]:
        """The answer's text deltas as the server streams them. Ends at ``data: [DONE]`` or the end of the stream."""
        limits = timeouts or self.timeouts
        payload = self._payload(model, messages, max_tokens, temperature, extra) | {"stream": True}
        deadline = time.monotonic() + limits.total
        async with AsyncExitStack() as stack:
            try:
                with anyio.fail_after(limits.total):  # connecting and retrying until the first byte
                    response = await stack.enter_async_context(
                        self._response("POST", "/chat/completions", model, payload, limits, stream=True)
                    )
            except TimeoutError as exc:
                raise BackendTimeout(f"LLM stream did not start within {limits.total}s", backend=BACKEND) from exc
            try:
                async for data in sse_data(_lines_within(response, deadline, limits)):
                    if data == "[DONE]":
                        return
                    delta = stream_delta(data)
                    if delta:
                        yield delta
            except httpx.TransportError as exc:
                raise _transport_error(exc, str(response.request.url)) from exc


async def _lines_within(response: httpx.Response, deadline: float, limits: Timeouts) -> AsyncIterator[str]:
    """The response's lines, each awaited at most ``limits.read`` seconds and all of them by ``deadline``: a
    stalled stream fails with :class:`BackendTimeout` whatever the transport does about read timeouts."""
    lines = response.aiter_lines()
    while True:
        wait = min(limits.read, deadline - time.monotonic())
        try:
            with anyio.fail_after(max(wait, 0.0)):
                line = await anext(lines)
        except StopAsyncIteration:
            return
        except TimeoutError as exc:
            raise BackendTimeout(f"LLM stream stalled or exceeded {limits.total}s", backend=BACKEND) from exc
        yield line


async def sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The ``data`` of each server-sent event (multi-line data joined by newlines); comments and fields ignored."""
    buffer: list[str] = []
    async for line in lines:
        if line.startswith("data:"):
            buffer.append(line[5:].removeprefix(" "))
        elif not line.strip() and buffer:
            yield "\n".join(buffer)
            buffer = []
    if buffer:
        yield "\n".join(buffer)


def stream_delta(data: str) -> str:
    """The content delta of one stream chunk; an error event inside the stream raises :class:`UpstreamError`."""
    try:
        chunk = json.loads(data)
    except json.JSONDecodeError as exc:
        raise UpstreamError(f"malformed stream event: {data[:200]!r}", backend=BACKEND, status=200) from exc
    if isinstance(chunk, dict) and "error" in chunk:
        details = body_details(chunk)
        raise UpstreamError(
            f"LLM stream failed: {details.get('message')}",
            backend=BACKEND,
            status=int(details.get("code") or 500) if str(details.get("code") or "").isdigit() else 500,
            error_type=details.get("type"),
            param=details.get("param"),
            code=details.get("code"),
        )
    choices = chunk.get("choices") or []
    return str((choices[0].get("delta") or {}).get("content") or "") if choices else ""
