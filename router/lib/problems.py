"""The one place that maps every error to an HTTP problem-details response.

    RouterError          router.lib.errors: InvalidQuery 400, NoAnswer 503, Overloaded 503 (+ Retry-After)
    HTTPException        litestar's own (validation 400, 404, 405, ...), reshaped into the same body
    BackendError         see backends.errors: timeout 504, unavailable 503, upstream 502, retrieval 503
    ClientLeft           499, logged at info: the client closed the connection mid-request
    Exception            anything else: 500, logged with its traceback, no internals in the body

Body (``application/problem+json``): ``{"type", "title", "status", "detail", "request_id"[, "errors"]}``. The
OpenAI-compatible front door answers in OpenAI's error shape instead (``router.routing.openai``), with the same
statuses.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.types import ExceptionHandlersMap

from backends.errors import BackendError, BackendTimeout, BackendUnavailable, ModelNotFound, RetrievalError
from router.lib.errors import RETRY_AFTER_S, ClientLeft, NoAnswer, RouterError
from router.lib.logging import current_request_id
from router.lib.middleware import request_id_of
from router.lib.validation import described, field_errors

log = structlog.get_logger("router.lib.problems")

BACKEND_STATUS: dict[type[BackendError], int] = {
    BackendTimeout: 504,
    BackendUnavailable: 503,
    RetrievalError: 503,
    ModelNotFound: 502,
    BackendError: 502,
}


def problem(
    status: int, detail: str, headers: dict[str, str] | None = None, *, request_id: str | None = None, **extra: Any
) -> Response[dict[str, Any]]:
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "request_id": request_id or current_request_id(),
        **extra,
    }
    return Response(body, status_code=status, media_type="application/problem+json", headers=headers)


def handle_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    errors = field_errors(exc.extra) if isinstance(exc.extra, list) else exc.extra
    extra = {"errors": errors} if errors else {}
    detail, headers = described(exc.detail, exc.extra), dict(exc.headers or {}) or None
    return problem(exc.status_code, detail, headers, request_id=request_id_of(request.scope), **extra)


def handle_router(_: Request[Any, Any, Any], exc: RouterError) -> Response[dict[str, Any]]:
    headers = {"Retry-After": str(RETRY_AFTER_S)} if exc.retryable else None
    if isinstance(exc, NoAnswer):
        log.warning("answer_failed", attempts=exc.attempts)
        return problem(exc.status_code, str(exc), headers, attempts=exc.attempts)
    return problem(exc.status_code, str(exc), headers)


def backend_status(exc: BackendError) -> int:
    return next(code for kind, code in BACKEND_STATUS.items() if isinstance(exc, kind))


def handle_backend(_: Request[Any, Any, Any], exc: BackendError) -> Response[dict[str, Any]]:
    status = backend_status(exc)
    log.warning("backend_failed", backend=exc.backend, error=type(exc).__name__, detail=str(exc))
    return problem(status, f"{exc.backend} backend failed: {exc}", backend=exc.backend)


def handle_client_left(_: Request[Any, Any, Any], exc: ClientLeft) -> Response[dict[str, Any]]:
    """Nobody reads this answer; its status tells logs and metrics that the client left, not that the server
    failed."""
    log.info("client_left", detail=str(exc))
    body = {"type": "about:blank", "title": "Client Closed Request", "status": exc.status_code, "detail": str(exc),
            "request_id": current_request_id()}  # fmt: skip
    return Response(body, status_code=exc.status_code, media_type="application/problem+json")


def handle_unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.exception("request_failed", error=type(exc).__name__)
    return problem(500, "internal error; see the service log for this request id")


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    HTTPException: handle_http,
    RouterError: handle_router,
    BackendError: handle_backend,
    ClientLeft: handle_client_left,
    Exception: handle_unexpected,
}
