"""Wire types: msgspec Structs on one base. Requests forbid unknown fields; responses are frozen values."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

RouteName = Literal["ft", "rag", "both"]
RouteSource = Literal["policy", "request"]
GeneratorName = Literal["llm", "extractive"]


class Request(msgspec.Struct, forbid_unknown_fields=True):
    pass


class Value(msgspec.Struct, frozen=True):
    pass


class RouteRequest(Request):
    query: str


class QueryRequest(Request):
    query: str
    top_k: Annotated[int, msgspec.Meta(ge=1, le=50)] | None = None
    route: RouteName | None = None


class Scores(Value, frozen=True):
    """Calibrated probability that each route answers correctly."""

    ft: float
    rag: float
    both: float


class RouteResponse(Value, frozen=True):
    route: RouteName
    route_source: RouteSource
    scores: Scores
    thresholds_version: int
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


class QueryResponse(RouteResponse, frozen=True):
    """The decision fields, then the answer."""

    answer: str
    generator: GeneratorName
    model: str | None
    sources: list[Source]
    timings_ms: Timings


class Health(Value, frozen=True):
    status: str


class Readiness(Value, frozen=True):
    status: Literal["ready", "not_ready"]
    checks: dict[str, str]
