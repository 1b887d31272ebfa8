"""Wire types of the request path (``/v1/route``, ``/v1/query``, ``/health``, ``/ready``), on the bases of
``router.lib.schema``."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from backends.types import SearchMode
from models.routes import Route, Step
from router.lib.schema import Knob, Request, Value

RouteSource = Literal["policy", "request"]
KnobSource = Literal["live", "request"]
"""Where a decision's ``cost_weight`` came from: the live thresholds record, or the request."""
GeneratorName = Literal["llm", "extractive"]
FilterValue = str | list[str]


class RouteRequest(Request):
    query: str
    cost_weight: Knob | None = None
    """This request's own knob instead of the live one (within ``thresholds.request_knob_range``)."""


class Filters(Request):
    """Exact matches on chunk metadata; a list matches any of its values. Fields combine with AND."""

    doc_id: FilterValue | None = None
    uri: FilterValue | None = None
    title: FilterValue | None = None

    def as_dict(self) -> dict[str, FilterValue]:
        return {f: v for f in self.__struct_fields__ if (v := getattr(self, f)) is not None}


class RetrievalOptions(Request):
    mode: SearchMode | None = None
    """vector (embedding similarity), text (BM25 full text) or hybrid (both, fused by reciprocal rank)."""
    filters: Filters | None = None


class QueryRequest(Request):
    query: str
    top_k: Annotated[int, msgspec.Meta(ge=1, le=50)] | None = None
    route: Route | None = None
    cost_weight: Knob | None = None
    """This request's own knob instead of the live one (within ``thresholds.request_knob_range``)."""
    stream: bool = False
    """Server-sent events: ``decision`` first, then ``answer`` (who answers, sources), ``delta``... and ``done``."""
    retrieval: RetrievalOptions | None = None


class Scores(Value, frozen=True):
    """Calibrated probability that each route answers correctly."""

    ft: float
    rag: float
    both: float

    def as_tuple(self) -> tuple[float, float, float]:
        return self.ft, self.rag, self.both


class RouteResponse(Value, frozen=True):
    route: Route
    route_source: RouteSource
    scores: Scores
    thresholds_version: int
    cost_weight: float
    knob_source: KnobSource
    model_version: str
    request_id: str


class Source(Value, frozen=True):
    id: str
    document_id: str
    title: str
    section: str
    uri: str
    score: float
    text: str


class Timings(Value, frozen=True):
    embed: float
    classify: float
    retrieve: float
    generate: float
    total: float


class Fallback(Value, frozen=True):
    """The decided route could not answer; ``to`` did. ``reason`` is the first failure's kind."""

    from_: Route = msgspec.field(name="from")
    to: Step
    reason: str
    detail: str


class AnswerStart(Value, frozen=True):
    """Who answers and from which sources: known once the answering backend has accepted the request."""

    answered_by: Step
    generator: GeneratorName
    model: str | None
    fallback: Fallback | None
    sources: list[Source]


class Usage(Value, frozen=True):
    """Token counts as the LLM server reported them."""

    prompt_tokens: int
    completion_tokens: int


class QueryResponse(RouteResponse, frozen=True):
    """The decision fields, then the answer."""

    answer: str
    answered_by: Step
    generator: GeneratorName
    model: str | None
    fallback: Fallback | None
    sources: list[Source]
    timings_ms: Timings
    finish_reason: str | None = None
    """``stop``, or ``length`` when the answer hit max_tokens."""
    usage: Usage | None = None
    """None for extractive answers, or when the server reports no usage."""


class StreamDone(Value, frozen=True):
    answer_chars: int
    timings_ms: Timings


class Health(Value, frozen=True):
    status: str


class Readiness(Value, frozen=True):
    status: Literal["ready", "degraded", "not_ready"]
    checks: dict[str, str]
