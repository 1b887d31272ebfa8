"""Request context: a request id per request (taken from ``X-Request-ID`` when valid), bound into structlog
contextvars, returned in the ``X-Request-ID`` response header, and one canonical ``request_completed`` line with
method, path, status and duration.

The middleware binds the id for routed requests; the ``before_send`` hook runs for every response (unknown paths
and errors included), adds the header, and when the body is complete logs the canonical line and counts the
request in the app's metrics (by route template, ``unmatched`` when no route matched).
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from router.lib.metrics import UNMATCHED, Metrics

HEADER = "x-request-id"
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
log = structlog.get_logger("router.http")


def _context(scope: Scope) -> dict[str, Any]:
    """The request's id and start time, created on first use and kept in the scope's state."""
    state = scope.setdefault("state", {})
    if "request_id" not in state:
        given = MutableScopeHeaders(scope).get(HEADER) if scope["type"] == ScopeType.HTTP else None
        state["request_id"] = given if given and _VALID_ID.match(given) else uuid.uuid4().hex
        state["started"] = time.perf_counter()
    return state


def request_id_of(scope: Scope) -> str:
    """This request's id: the one the middleware bound, or, for a request no route matched (litestar answers it
    before any middleware runs), the one its response header will carry."""
    return str(_context(scope)["request_id"])


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(request_id=_context(scope)["request_id"])
        await self.app(scope, receive, send)


async def before_send(message: Message, scope: Scope) -> None:
    if scope["type"] != ScopeType.HTTP:
        return
    state = _context(scope)
    if message["type"] == "http.response.start":
        MutableScopeHeaders.from_message(message)[HEADER] = state["request_id"]
        state["status"] = message["status"]
    elif message["type"] == "http.response.body" and not message.get("more_body", False):
        status = state.get("status", 0)
        seconds = time.perf_counter() - state["started"]
        log.log(
            40 if status >= 500 else 20,
            "request_completed",
            request_id=state["request_id"],
            method=scope["method"],
            path=scope["path"],
            status=status,
            duration_ms=round(seconds * 1000, 2),
        )
        metrics: Metrics | None = scope["litestar_app"].state.get("metrics")
        if metrics is not None:
            metrics.observe_http(scope["method"], scope.get("path_template") or UNMATCHED, status, seconds)
