"""The app factory: the one place where handlers, dependencies, lifespan, middleware and error mapping meet."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta

import anyio
import structlog
from litestar import Litestar, Router
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig

from backends.errors import BackendError
from models.bundle import BundleError
from router.api import HealthController, RoutingController
from router.auth import InsecureSettings, check_secrets
from router.dashboard import DashboardController
from router.documents_api import DocumentsController
from router.errors import EXCEPTION_HANDLERS
from router.labelled import OutcomesScorer
from router.limits import LIMIT_SETTING, LimitedRequest
from router.logs import configure_logging
from router.logs_api import RoutingLogsController, StatsController, window_drift
from router.metrics import Metrics, scrape
from router.middleware import RequestContextMiddleware, before_send
from router.openai_api import OpenAIController
from router.openapi import document_errors
from router.ratelimit import RateLimiter, rate_limit
from router.resources import ConfigurationError, open_service
from router.routing_log import RoutingLog, RoutingLogError
from router.service import RouterService
from router.settings import Settings, get_settings
from router.thresholds import ThresholdsStoreError
from router.thresholds_api import ThresholdsController

log = structlog.get_logger("router.app")


def provide_service(state: State) -> RouterService:
    service: RouterService = state.service
    return service


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncIterator[None]:
    stack = AsyncExitStack()
    try:
        service = await stack.enter_async_context(open_service(app.state.settings))
    except (BundleError, ConfigurationError, BackendError, ThresholdsStoreError, RoutingLogError) as exc:
        log.error("service_refused", reason=str(exc), error=type(exc).__name__)  # one line naming what is wrong
        raise
    async with stack, anyio.create_task_group() as tasks:
        app.state.service = service
        service.observers.append(app.state.metrics.observe)
        app.state.metrics.set_thresholds(service.tuning.record.version, service.tuning.policy.cost_weight)
        tasks.start_soon(_poll_thresholds, service, app.state.settings.thresholds.poll_seconds)
        if service.routing_log is not None:
            tasks.start_soon(service.routing_log.run)
            tasks.start_soon(_prune_routing_log, service.routing_log, app.state.settings)
            tasks.start_soon(_refresh_drift, service, service.routing_log, app.state.metrics)
        try:
            yield
        finally:
            app.state.service = None
            tasks.cancel_scope.cancel()


async def _poll_thresholds(service: RouterService, every: float) -> None:
    """Applies a thresholds version written through another replica within ``every`` seconds."""
    while True:
        await anyio.sleep(every)
        await anyio.to_thread.run_sync(service.refresh_thresholds)


async def _prune_routing_log(routing_log: RoutingLog, settings: Settings) -> None:
    cfg = settings.routing_log
    while True:
        try:
            await routing_log.prune(cfg.retention_days, cfg.max_records)
        except Exception as exc:  # retention must never stop the service; it is retried next round
            log.warning("routing_log_prune_failed", error=str(exc))
        await anyio.sleep(cfg.prune_seconds)


DRIFT_REFRESH_S = 60
DRIFT_WINDOW = timedelta(hours=1)


async def _refresh_drift(service: RouterService, routing_log: RoutingLog, metrics: Metrics) -> None:
    """Keeps the drift gauge current for scrapers: the last hour's drift, every minute."""
    while True:
        await anyio.sleep(DRIFT_REFRESH_S)
        try:
            found = await window_drift(service, routing_log, datetime.now(UTC) - DRIFT_WINDOW)
        except Exception as exc:  # a failed round keeps the last value; the next one retries
            log.warning("drift_refresh_failed", error=str(exc))
            continue
        if found is not None:
            metrics.set_drift(found["index"])


def cors_config(settings: Settings) -> CORSConfig | None:
    """None (no CORS headers for any origin) unless origins are configured."""
    origins = settings.cors.allow_origins
    if not origins:
        return None
    return CORSConfig(
        allow_origins=origins,
        allow_methods=["GET", "POST", "PUT", "DELETE"],
        allow_headers=["authorization", "x-api-key", "content-type", "x-request-id"],
        expose_headers=["x-request-id", "retry-after"],
        max_age=settings.cors.max_age,
    )


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or get_settings()
    configure_logging(settings.log.level, settings.log.format, settings.log.query_text)
    try:
        check_secrets(settings)
    except InsecureSettings as exc:
        log.error("service_refused", reason=str(exc), error=type(exc).__name__)
        raise
    documents = Router(  # a document of retrieval.max_document_chars needs more than the other endpoints' limit
        "/",
        route_handlers=[DocumentsController],
        request_max_body_size=settings.server.max_document_body_bytes,
        opt={LIMIT_SETTING: "server.max_document_body_bytes"},
    )
    app = Litestar(
        route_handlers=[
            RoutingController,
            HealthController,
            documents,
            OpenAIController,
            ThresholdsController,
            DashboardController,
            RoutingLogsController,
            StatsController,
            scrape,
        ],
        dependencies={"service": Provide(provide_service, sync_to_thread=False)},
        guards=[rate_limit],
        cors_config=cors_config(settings),
        lifespan=[lifespan],
        middleware=[DefineMiddleware(RequestContextMiddleware)],
        before_send=[before_send],
        exception_handlers=EXCEPTION_HANDLERS,
        state=State(
            {
                "settings": settings,
                "service": None,
                "metrics": Metrics(),
                "rate_limiter": RateLimiter.from_settings(settings.rate_limit),
                "outcomes": OutcomesScorer(settings.thresholds.outcomes_file, settings.thresholds.outcomes_split),
            }
        ),
        openapi_config=OpenAPIConfig(title="Adaptive query router", version="0.1.0", path="/schema"),
        signature_types=[RouterService],
        logging_config=None,
        request_class=LimitedRequest,
        request_max_body_size=settings.server.max_body_bytes,
    )
    document_errors(app)
    return app
