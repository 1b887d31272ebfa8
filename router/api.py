"""HTTP handlers. Each validates (through its Struct), calls one service method, and returns a Struct."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import msgspec
from litestar import Controller, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import JSONBody
from litestar.response import Stream

from router.auth import require_client
from router.resources import check_models
from router.schemas import Health, QueryRequest, QueryResponse, Readiness, RouteRequest, RouteResponse
from router.service import Ask, RouterService

READY_TIMEOUT_S = 2.0


class RoutingController(Controller):
    path = "/v1"
    tags = ("routing",)
    guards = (require_client,)

    @post("/route", status_code=200, summary="Decide a route (no generation)")
    async def route(self, data: JSONBody[RouteRequest], service: NamedDependency[RouterService]) -> RouteResponse:
        return await service.route(data.query, data.cost_weight)

    @post(
        "/query",
        status_code=200,
        summary="Decide a route and answer through it",
        description="With `stream: true` the answer comes as server-sent events (see the README).",
    )
    async def query(
        self, data: JSONBody[QueryRequest], service: NamedDependency[RouterService]
    ) -> QueryResponse | EventStream:
        ask = Ask(data.query, data.top_k, data.route, data.cost_weight, data.retrieval)
        if data.stream:
            return EventStream(sse(await service.query_stream(ask)), headers=SSE_HEADERS)
        return await service.query(ask)


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class EventStream(Stream):
    """A ``text/event-stream`` response from a handler that otherwise answers JSON: litestar gives the handler's
    media type precedence over the response's own, so it is forced here."""

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> Any:
        return super().to_asgi_response(*args, **(kwargs | {"media_type": "text/event-stream"}))


async def sse(events: AsyncIterator[tuple[str, Any]]) -> AsyncIterator[bytes]:
    """Named server-sent events, one JSON object per ``data:`` line."""
    async for name, payload in events:
        yield b"event: " + name.encode() + b"\ndata: " + msgspec.json.encode(payload) + b"\n\n"


class HealthController(Controller):
    tags = ("health",)

    @get("/health", summary="Liveness: the process serves HTTP")
    async def health(self) -> Health:
        return Health(status="ok")

    @get(
        "/ready",
        summary="Readiness: model loaded, document store answering; degraded when the LLM is not",
        description=(
            "200 `ready`; 200 `degraded` when the LLM server is unreachable or a circuit is open (answers fall back); "
            "503 `not_ready` while starting or when the document store fails (nothing could answer)."
        ),
    )
    async def ready(self, state: State) -> Response[Readiness]:
        service: RouterService | None = state.get("service")
        if service is None:
            return Response(Readiness("not_ready", {"service": "starting"}), status_code=503)
        checks = {"model": service.bundle.version, "thresholds": str(service.tuning.record.version)}
        try:
            with anyio.fail_after(READY_TIMEOUT_S):
                checks["retrieval"] = f"{await service.store.count()} chunks"
        except Exception as exc:
            checks["retrieval"] = f"failed: {type(exc).__name__}: {exc}"
            return Response(Readiness("not_ready", checks), status_code=503)
        checks["llm"] = await _llm_status(service)
        open_circuits = [name for name, guard in service.guards.items() if guard.breaker.state != "closed"]
        checks["circuits"] = ", ".join(f"{n} {service.guards[n].breaker.state}" for n in open_circuits) or "closed"
        degraded = checks["llm"] not in ("ok", "not configured") or bool(open_circuits)
        return Response(Readiness("degraded" if degraded else "ready", checks))


async def _llm_status(service: RouterService) -> str:
    if service.llm is None:
        return "not configured"
    try:
        with anyio.fail_after(READY_TIMEOUT_S):
            return await check_models(service.llm)
    except Exception as exc:  # a model that disappeared since startup, or a timeout
        return f"failed: {type(exc).__name__}: {exc}"
