"""The error responses in the OpenAPI schema, so that a client (or a fuzzer checking conformance) knows every status
an operation can answer and the body it comes with.

litestar documents only a 400 with its own exception shape; the service answers problem details
(``router.lib.errors``), and OpenAI's error body on the OpenAI-compatible front door. ``document_errors`` rewrites each
operation's responses once, when the app is built:

    400          malformed or invalid input: operations with a body or parameters
    413, 415     operations with a body (``router.lib.limits``)
    401, 403     operations behind a key guard (``GUARD_STATUSES``: client keys 401, the admin key 401 and 403)
    429          every ``/v1/`` operation (the rate limit, when configured)
    404, 5xx     per operation, from ``DOMAIN`` (lookups, backends, a store or log that is down, load shedding)

Streaming answers (``stream: true``) are documented as ``text/event-stream`` beside the JSON answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from http import HTTPStatus

from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Reference, Schema
from litestar.routes import HTTPRoute
from litestar.types import Guard

PROBLEM = Schema(
    type=OpenAPIType.OBJECT,
    required=["type", "title", "status", "detail", "request_id"],
    properties={
        "type": Schema(type=OpenAPIType.STRING),
        "title": Schema(type=OpenAPIType.STRING),
        "status": Schema(type=OpenAPIType.INTEGER),
        "detail": Schema(type=OpenAPIType.STRING, description="what is wrong, naming the field or limit"),
        "request_id": Schema(type=OpenAPIType.STRING),
        "errors": Schema(
            type=[OpenAPIType.ARRAY, OpenAPIType.OBJECT], description="per-field messages of a validation failure"
        ),
        "attempts": Schema(type=OpenAPIType.ARRAY, description="each step tried when no route could answer"),
        "backend": Schema(type=OpenAPIType.STRING, description="the backend that failed"),
    },
    description="RFC 9457 problem details",
)
OPENAI_ERROR = Schema(
    type=OpenAPIType.OBJECT,
    required=["error"],
    properties={
        "error": Schema(
            type=OpenAPIType.OBJECT,
            required=["message", "type"],
            properties={
                "message": Schema(type=OpenAPIType.STRING),
                "type": Schema(type=OpenAPIType.STRING),
                "param": Schema(one_of=[Schema(type=OpenAPIType.STRING), Schema(type=OpenAPIType.NULL)]),
                "code": Schema(one_of=[Schema(type=OpenAPIType.STRING), Schema(type=OpenAPIType.NULL)]),
            },
        )
    },
    description="OpenAI's error body",
)
WHY = {
    400: "malformed JSON, a wrong type, an unknown field or a value out of bounds (the detail names it)",
    401: "the admin key is missing or wrong",
    403: "the admin endpoints are disabled (no server.admin_api_key)",
    404: "not found",
    413: "the body is over the endpoint's size limit",
    415: "the body is not application/json",
    429: "over the rate limit (Retry-After says when to come back)",
    502: "the LLM server answered with an error",
    503: "not available now: nothing could answer, a store is down, or the service is at capacity",
    504: "the LLM server timed out",
}
BACKENDS = (502, 503, 504)
DOMAIN: dict[tuple[str, str], tuple[int, ...]] = {
    ("POST", "/v1/route"): (503,),
    ("POST", "/v1/query"): BACKENDS,
    ("POST", "/v1/chat/completions"): (404, *BACKENDS),
    ("POST", "/v1/documents"): (503,),
    ("POST", "/v1/documents/delete"): (503,),
    ("GET", "/v1/documents/{doc_id}"): (404, 503),
    ("DELETE", "/v1/documents/{doc_id}"): (404, 503),
    ("PUT", "/v1/thresholds"): (503,),
    ("GET", "/v1/thresholds/history"): (503,),
    ("POST", "/v1/thresholds/rollback"): (404, 503),
    ("GET", "/v1/routing-logs"): (503,),
    ("GET", "/v1/routing-logs/{request_id}"): (404, 503),
    ("GET", "/v1/stats"): (503,),
}
"""Statuses an operation answers from its own logic, beyond those its shape implies."""
GUARD_STATUSES = {
    "require_admin": (401, 403),
    "require_reader": (401, 403),
    "require_log_reader": (401, 403),
    "require_client": (401,),
}
"""By guard name (router.lib.auth, router.thresholds.controllers, router.routing_log.controllers): what a refusal
answers. Other guards (the rate limit) add nothing here."""
STREAMING = {("POST", "/v1/query"), ("POST", "/v1/chat/completions")}
OPENAI_TAG = "openai"


def error_statuses(method: str, path: str, operation: Operation, guards: list[Guard]) -> set[int]:
    statuses = set(DOMAIN.get((method, path), ()))
    for guard in guards:  # litestar wraps each guard in an AsyncCallable holding it as ``func``
        statuses.update(GUARD_STATUSES.get(getattr(getattr(guard, "func", guard), "__name__", ""), ()))
    if operation.request_body is not None:
        statuses |= {400, 413, 415}
    if operation.parameters:
        statuses.add(400)
    if path.startswith("/v1/"):
        statuses.add(429)
    return statuses


def _error(status: int, media_type: str, schema: Reference) -> OpenAPIResponse:
    return OpenAPIResponse(
        description=f"{HTTPStatus(status).phrase}: {WHY[status]}",
        content={media_type: OpenAPIMediaType(schema=schema)},
    )


def _stream_beside_json(operation: Operation) -> None:
    """The 200 answer as JSON or as server-sent events (litestar lists it as ``oneOf: [answer, {}]``)."""
    ok = operation.responses["200"] if operation.responses else None
    if not isinstance(ok, OpenAPIResponse) or not ok.content:
        return
    schema = ok.content["application/json"].schema
    if isinstance(schema, Schema) and schema.one_of:
        schema = schema.one_of[0]
    ok.content = {
        "application/json": OpenAPIMediaType(schema=schema),
        "text/event-stream": OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING)),
    }


def _ready_not_ready(operation: Operation) -> None:
    ok = operation.responses["200"] if operation.responses else None
    if isinstance(ok, OpenAPIResponse) and operation.responses is not None:
        operation.responses["503"] = OpenAPIResponse(
            description="Service Unavailable: not ready (starting, or the document store fails)", content=ok.content
        )


def _operations(app: Litestar) -> Iterator[tuple[str, str, Operation, HTTPRouteHandler]]:
    """(method, path, operation, handler) for every operation of ``app``'s OpenAPI schema."""
    paths = app.openapi_schema.paths or {}
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or (item := paths.get(route.path_format or "/")) is None:
            continue
        for handler in route.route_handlers:
            for method in handler.http_methods:
                if isinstance(operation := getattr(item, method.lower(), None), Operation):
                    yield method, route.path_format, operation, handler


def document_errors(app: Litestar) -> None:
    """Rewrites the error responses of every operation in ``app``'s OpenAPI schema (built here, then cached)."""
    components = app.openapi_schema.components
    components.schemas = {**(components.schemas or {}), "Problem": PROBLEM, "OpenAIError": OPENAI_ERROR}
    problem = ("application/problem+json", Reference("#/components/schemas/Problem"))
    openai_error = ("application/json", Reference("#/components/schemas/OpenAIError"))
    for method, path, operation, handler in _operations(app):
        media_type, body = openai_error if OPENAI_TAG in handler.resolve_tags() else problem
        responses = operation.responses = dict(operation.responses or {})
        for status in error_statuses(method, path, operation, handler.resolve_guards()):
            responses[str(status)] = _error(status, media_type, body)
        if (method, path) in STREAMING:
            _stream_beside_json(operation)
        if path == "/ready":
            _ready_not_ready(operation)
