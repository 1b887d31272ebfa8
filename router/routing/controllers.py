"""HTTP handlers. Each validates (through its Struct), calls one service method, and returns a Struct."""

from __future__ import annotations

from litestar import Controller, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import JSONBody

from router.lib.auth import require_client
from router.lib.sse import SSE_HEADERS, EventStream, sse
from router.routing.readiness import readiness
from router.routing.schemas import Health, QueryRequest, QueryResponse, Readiness, RouteRequest, RouteResponse
from router.routing.service import Ask, RouterService


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
        description="With `stream: true` the answer comes as server-sent events (see docs/http-api.md).",
    )
    async def query(
        self, data: JSONBody[QueryRequest], service: NamedDependency[RouterService]
    ) -> QueryResponse | EventStream:
        ask = Ask(data.query, data.top_k, data.route, data.cost_weight, data.retrieval)
        if data.stream:
            return EventStream(sse(await service.query_stream(ask)), headers=SSE_HEADERS)
        return await service.query(ask)


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
        resources = state.get("resources")
        if resources is None:
            return Response(Readiness("not_ready", {"service": "starting"}), status_code=503)
        live = resources.live.current.record.version
        found = await readiness(resources.bundle.version, live, resources.store, resources.llm, resources.guards)
        return Response(found, status_code=503 if found.status == "not_ready" else 200)
