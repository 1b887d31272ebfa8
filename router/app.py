"""The app factory: the one place where handlers, dependencies, lifespan, middleware and error mapping meet."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import structlog
from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig

from backends.errors import BackendError
from models.bundle import BundleError
from router.api import HealthController, RoutingController
from router.documents_api import DocumentsController
from router.errors import EXCEPTION_HANDLERS
from router.logs import configure_logging
from router.middleware import RequestContextMiddleware, before_send
from router.openai_api import OpenAIController
from router.resources import ConfigurationError, open_service
from router.service import RouterService
from router.settings import Settings, get_settings

log = structlog.get_logger("router.app")


def provide_service(state: State) -> RouterService:
    service: RouterService = state.service
    return service


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncIterator[None]:
    stack = AsyncExitStack()
    try:
        service = await stack.enter_async_context(open_service(app.state.settings))
    except (BundleError, ConfigurationError, BackendError) as exc:
        log.error("service_refused", reason=str(exc), error=type(exc).__name__)  # one line naming what is wrong
        raise
    async with stack:
        app.state.service = service
        try:
            yield
        finally:
            app.state.service = None


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or get_settings()
    configure_logging(settings.log.level, settings.log.format)
    return Litestar(
        route_handlers=[RoutingController, HealthController, DocumentsController, OpenAIController],
        dependencies={"service": Provide(provide_service, sync_to_thread=False)},
        lifespan=[lifespan],
        middleware=[DefineMiddleware(RequestContextMiddleware)],
        before_send=[before_send],
        exception_handlers=EXCEPTION_HANDLERS,
        state=State({"settings": settings, "service": None}),
        openapi_config=OpenAPIConfig(title="Adaptive query router", version="0.1.0", path="/schema"),
        signature_types=[RouterService],
        logging_config=None,
    )
