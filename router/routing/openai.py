"""The OpenAI-compatible front door: ``POST /v1/chat/completions`` and ``GET /v1/models``.

``model`` picks who decides: ``router`` (or ``auto``) lets the router's policy choose the route; ``ft``, ``rag`` and
``both``, or the configured model names (``llm.ft_model`` -> ``ft``, ``llm.base_model`` -> ``rag``), force a route.
The question is the last message, which must come from the user; earlier messages are passed to the LLM as the
conversation. Answers carry the decision in the extra field ``router``; a stream sends it in its first chunk.
Errors use OpenAI's body, ``{"error": {"message", "type", "param", "code"}}``, so OpenAI clients raise the right
exception.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException
from litestar.params import JSONBody
from litestar.types import ExceptionHandlersMap

from backends.errors import BackendError
from backends.generators import ChatOptions
from backends.vllm import ChatMessage
from models.routes import ROUTES, Route
from router.lib.auth import require_client
from router.lib.errors import InvalidQuery, RouterError
from router.lib.logging import current_request_id
from router.lib.problems import backend_status
from router.lib.sse import SSE_HEADERS, EventStream
from router.lib.text import check_text
from router.lib.validation import described
from router.routing.openai_schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    CompletionUsage,
    ModelCard,
    ModelList,
    RouterInfo,
    RouterOptions,
    chunk,
)
from router.routing.schemas import AnswerStart, QueryResponse, RouteResponse
from router.routing.service import Ask, RouterService

ROUTER_MODELS = ("router", "auto")


class ModelNotServed(RouterError):
    status_code = 404


def route_for_model(model: str, state: State) -> Route | None:
    """The route a ``model`` name forces, or None for the router's own choice; unknown names are a 404."""
    if model in ROUTER_MODELS:
        return None
    if model in ROUTES:
        return model
    llm = state.settings.llm
    named: dict[str, Route] = {llm.base_model: "rag", llm.ft_model: "ft"} if llm.base_url else {}
    if model in named:
        return named[model]
    served = ", ".join([*ROUTER_MODELS, *ROUTES, *named])
    raise ModelNotServed(f"The model `{model}` does not exist. Served models: {served}.")


def conversation(data: ChatCompletionRequest) -> tuple[str, ChatOptions]:
    """The question (the last, user message) and the options carrying the earlier turns and sampling."""
    try:
        texts = [message.text() for message in data.messages]
    except ValueError as exc:
        raise InvalidQuery(str(exc)) from exc
    for n, text in enumerate(texts):
        check_text(text, f"messages[{n}].content")
    if data.messages[-1].role != "user":
        raise InvalidQuery(f"the last message must come from the user, not {data.messages[-1].role!r}")
    if any(message.role == "tool" for message in data.messages):
        raise InvalidQuery("tool messages are not supported: the router offers no tools")
    if data.logprobs:
        raise InvalidQuery("logprobs is not supported: the router does not return token log probabilities")
    if data.stream_options and data.stream_options.include_usage:
        raise InvalidQuery("stream_options.include_usage is not supported: streamed answers carry no token counts")
    history = tuple(
        ChatMessage("system" if m.role == "developer" else m.role, text)
        for m, text in zip(data.messages[:-1], texts[:-1], strict=True)
    )
    sampling = {
        key: value
        for key in ("top_p", "stop", "seed", "presence_penalty", "frequency_penalty")
        if (value := getattr(data, key)) is not None
    }
    options = ChatOptions(
        history=history,
        max_tokens=data.max_completion_tokens or data.max_tokens,
        temperature=data.temperature,
        sampling=tuple(sampling.items()),
    )
    return texts[-1], options


def router_info(decision: RouteResponse, answer: AnswerStart) -> RouterInfo:
    return RouterInfo(
        **{field: getattr(decision, field) for field in RouteResponse.__struct_fields__},  # a QueryResponse has more
        answered_by=answer.answered_by,
        fallback=answer.fallback,
        sources=answer.sources,
    )


def completion(result: QueryResponse) -> ChatCompletion:
    answer = AnswerStart(result.answered_by, result.generator, result.model, result.fallback, result.sources)
    usage = result.usage
    return ChatCompletion(
        id=f"chatcmpl-{result.request_id}",
        created=int(time.time()),
        model=result.model or "extractive",
        choices=[Choice(0, AssistantMessage("assistant", result.answer), result.finish_reason or "stop")],
        usage=CompletionUsage(
            usage.prompt_tokens, usage.completion_tokens, usage.prompt_tokens + usage.completion_tokens
        )
        if usage
        else None,
        router=router_info(result, answer),
    )


def _data(payload: Any) -> bytes:
    return b"data: " + msgspec.json.encode(payload) + b"\n\n"


async def chunks(events: AsyncIterator[tuple[str, Any]]) -> AsyncIterator[bytes]:
    """The service's events as OpenAI stream chunks: role chunk (with ``router``), content chunks, a last chunk with
    ``finish_reason``, ``data: [DONE]``. A failure is an ``{"error": ...}`` event, as vLLM sends it, then [DONE]."""
    completion_id, created, model = f"chatcmpl-{current_request_id()}", int(time.time()), "router"
    decision: RouteResponse | None = None
    failed = False
    async for name, payload in events:
        if name == "decision":
            decision = payload
        elif name == "answer" and decision is not None:
            model = payload.model or "extractive"
            first = chunk(completion_id, created, model, {"role": "assistant", "content": ""}, None)
            yield _data(first | {"router": msgspec.to_builtins(router_info(decision, payload))})
        elif name == "delta":
            yield _data(chunk(completion_id, created, model, {"content": payload["text"]}, None))
        elif name == "error":
            failed = True
            status = int(payload.get("status", 500))
            yield _data(error_body(payload["detail"], status))
    if not failed:
        yield _data(chunk(completion_id, created, model, {}, "stop"))
    yield b"data: [DONE]\n\n"


ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error"}


def error_body(message: str, status: int, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    kind = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def openai_error(status: int, message: str, **fields: Any) -> Response[dict[str, Any]]:
    headers = {"Retry-After": "1"} if fields.pop("retry", False) else None
    return Response(error_body(message, status, **fields), status_code=status, headers=headers)


def _http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    code = "rate_limit_exceeded" if exc.status_code == 429 else None  # OpenAI's code; clients back off on it
    answer = openai_error(exc.status_code, described(exc.detail, exc.extra), code=code)
    answer.headers.update(exc.headers or {})  # Retry-After, WWW-Authenticate
    return answer


def _router(_: Request[Any, Any, Any], exc: RouterError) -> Response[dict[str, Any]]:
    if isinstance(exc, ModelNotServed):
        return openai_error(404, str(exc), param="model", code="model_not_found")
    return openai_error(exc.status_code, str(exc), retry=exc.retryable)


def _backend(_: Request[Any, Any, Any], exc: BackendError) -> Response[dict[str, Any]]:
    return openai_error(backend_status(exc), f"{exc.backend} backend failed: {exc}")


class OpenAIController(Controller):
    path = "/v1"
    tags = ("openai",)
    guards = (require_client,)
    exception_handlers: ExceptionHandlersMap = {  # noqa: RUF012 (litestar reads it from the class)
        HTTPException: _http,
        RouterError: _router,
        BackendError: _backend,
    }

    @get("/models", summary="Models: `router`/`auto` (the router decides) and the names that force a route")
    async def models(self, state: State) -> ModelList:
        llm = state.settings.llm
        names = [*ROUTER_MODELS, *ROUTES, *([llm.base_model, llm.ft_model] if llm.base_url else [])]
        created = int(time.time())
        return ModelList([ModelCard(name, created, "router") for name in dict.fromkeys(names)])

    @post("/chat/completions", status_code=200, summary="OpenAI-compatible chat completion, routed")
    async def chat_completions(
        self, data: JSONBody[ChatCompletionRequest], service: NamedDependency[RouterService], state: State
    ) -> ChatCompletion | EventStream:
        route = route_for_model(data.model, state)
        question, options = conversation(data)
        extra = data.router or RouterOptions()
        ask = Ask(question, extra.top_k, route, extra.cost_weight, extra.retrieval, options)
        if data.stream:
            return EventStream(chunks(await service.query_stream(ask)), headers=SSE_HEADERS)
        return completion(await service.query(ask))
