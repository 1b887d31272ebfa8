"""HTTP handlers. Each validates (through its Struct), calls one service method, and returns a Struct."""

from __future__ import annotations

import anyio
from litestar import Controller, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import JSONBody

from router.schemas import Health, QueryRequest, QueryResponse, Readiness, RouteRequest, RouteResponse
from router.service import RouterService

READY_TIMEOUT_S = 2.0


class RoutingController(Controller):
    path = "/v1"
    tags = ("routing",)

    @post("/route", status_code=200, summary="Decide a route (no generation)")
    async def route(self, data: JSONBody[RouteRequest], service: NamedDependency[RouterService]) -> RouteResponse:
        return await service.route(data.query)

    @post("/query", status_code=200, summary="Decide a route and answer through it")
    async def query(self, data: JSONBody[QueryRequest], service: NamedDependency[RouterService]) -> QueryResponse:
        return await service.query(data.query, data.top_k, data.route)


class HealthController(Controller):
    tags = ("health",)

    @get("/health", summary="Liveness: the process serves HTTP")
    async def health(self) -> Health:
        return Health(status="ok")

    @get("/ready", summary="Readiness: model bundle loaded and document store answering")
    async def ready(self, state: State) -> Response[Readiness]:
        service: RouterService | None = state.get("service")
        if service is None:
            return Response(Readiness("not_ready", {"service": "starting"}), status_code=503)
        checks = {"model": service.bundle.version, "thresholds": str(service.thresholds.version)}
        try:
            with anyio.fail_after(READY_TIMEOUT_S):
                checks["retrieval"] = f"{await service.store.count()} chunks"
        except Exception as exc:
            checks["retrieval"] = f"failed: {type(exc).__name__}: {exc}"
            return Response(Readiness("not_ready", checks), status_code=503)
        checks["generator"] = service.generator.name
        return Response(Readiness("ready", checks))
