"""Wire types of the OpenAI-compatible front door (``POST /v1/chat/completions``, ``GET /v1/models``).

Requests follow OpenAI's chat completion shape. Fields that would change the answer but that the router cannot honour
(``n`` > 1, tools, response formats, images, logprobs) are refused with a 400 rather than ignored; an unknown field
is refused too. Fields OpenAI clients send that cannot change the answer (``user``, ``metadata``, ``store``,
``service_tier``, ``prompt_cache_key``, ``safety_identifier``, ``parallel_tool_calls``, ``logprobs: false``) are
accepted and ignored. Responses are OpenAI's shapes plus one extra field, ``router``, carrying the routing decision.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from models.routes import Step
from router.lib.schema import Knob, Request, Value
from router.routing.schemas import Fallback, KnobSource, RetrievalOptions, Scores, Source

Role = Literal["system", "developer", "user", "assistant", "tool"]


class TextPart(Request):
    type: str
    text: str | None = None


class ChatMessageIn(Request):
    role: Role
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        """The message's text; a part that is not text (an image, audio) is refused."""
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        for part in self.content:
            if part.type != "text" or part.text is None:
                raise ValueError(f"content part of type {part.type!r} is not supported; send text parts only")
        return "".join(part.text or "" for part in self.content)


class StreamOptions(Request):
    include_usage: bool = False


class RouterOptions(Request):
    """The router's own request options, sent as the extra field ``router`` (``extra_body`` in the openai client)."""

    top_k: Annotated[int, msgspec.Meta(ge=1, le=50)] | None = None
    cost_weight: Knob | None = None
    """This request's own knob instead of the live one (within ``thresholds.request_knob_range``)."""
    retrieval: RetrievalOptions | None = None


class ChatCompletionRequest(Request):
    model: str
    messages: Annotated[list[ChatMessageIn], msgspec.Meta(min_length=1)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    max_completion_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, msgspec.Meta(gt=0, le=1)] | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: Annotated[float, msgspec.Meta(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, msgspec.Meta(ge=-2, le=2)] | None = None
    n: Annotated[int, msgspec.Meta(ge=1, le=1)] | None = None
    user: str | None = None
    router: RouterOptions | None = None
    # Accepted so that OpenAI clients that send them work; none changes the answer (logprobs: true is refused).
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    parallel_tool_calls: bool | None = None
    logprobs: bool | None = None


class RouterInfo(Value, frozen=True):
    """The routing decision behind a completion (the ``router`` field of responses and of the first chunk)."""

    route: Step
    route_source: str
    scores: Scores
    answered_by: Step
    fallback: Fallback | None
    sources: list[Source]
    model_version: str
    thresholds_version: int
    cost_weight: float
    knob_source: KnobSource
    request_id: str


class AssistantMessage(Value, frozen=True):
    role: Literal["assistant"]
    content: str


class Choice(Value, frozen=True):
    index: int
    message: AssistantMessage
    finish_reason: str
    logprobs: None = None


class CompletionUsage(Value, frozen=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(Value, frozen=True):
    id: str
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage | None
    router: RouterInfo
    object: Literal["chat.completion"] = "chat.completion"
    system_fingerprint: str | None = None


class ModelCard(Value, frozen=True):
    id: str
    created: int
    owned_by: str
    object: Literal["model"] = "model"


class ModelList(Value, frozen=True):
    data: list[ModelCard]
    object: Literal["list"] = "list"


def chunk(completion_id: str, created: int, model: str, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    """One ``chat.completion.chunk`` (a plain dict: its ``delta`` varies)."""
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
