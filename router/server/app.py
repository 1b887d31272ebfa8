"""The app factory: the one place where handlers, dependencies, lifespan, middleware and error mapping meet."""

from __future__ import annotations

from typing import Any

import anyio
import structlog
from litestar import Litestar, Router
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig

from backends.lancedb import DocumentStore
from models.bundle import Bundle
from models.embedder import Embedder
from router.dashboard.controllers import DashboardController
from router.documents.controllers import DocumentsController
from router.lib.auth import InsecureSettings, check_secrets
from router.lib.limits import LIMIT_SETTING, LimitedRequest
from router.lib.logging import configure_logging
from router.lib.metrics import Metrics
from router.lib.middleware import RequestContextMiddleware, before_send
from router.lib.openapi import document_errors
from router.lib.problems import EXCEPTION_HANDLERS
from router.lib.ratelimit import RateLimiter, rate_limit
from router.lib.scrape import scrape
from router.lib.settings import Settings, get_settings
from router.routing.controllers import HealthController, RoutingController
from router.routing.metrics import DecisionMetrics
from router.routing.openai import OpenAIController
from router.routing.service import RouterService
from router.routing_log.controllers import RoutingLogsController, StatsController
from router.routing_log.store import RoutingLog
from router.server.lifespan import lifespan
from router.thresholds.controllers import ThresholdsController
from router.thresholds.live import LiveTuning
from router.thresholds.outcomes import OutcomesScorer
from router.thresholds.traffic import RecentScores

log = structlog.get_logger("router.server.app")


PROVIDED = ("service", "live", "traffic", "store", "embedder", "bundle", "routing_log", "outcomes", "ingestion")
"""What handlers may ask for by name, each a field of the :class:`~router.server.resources.Resources` opened by the
lifespan."""


def _provider(name: str) -> Provide:
    def provide(state: State) -> Any:
        return getattr(state.resources, name)

    return Provide(provide, sync_to_thread=False)


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
    metrics = Metrics()
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
        dependencies={name: _provider(name) for name in PROVIDED},
        guards=[rate_limit],
        cors_config=cors_config(settings),
        lifespan=[lifespan],
        middleware=[DefineMiddleware(RequestContextMiddleware)],
        before_send=[before_send],
        exception_handlers=EXCEPTION_HANDLERS,
        state=State(
            {
                "settings": settings,
                "resources": None,
                "metrics": metrics,
                "decision_metrics": DecisionMetrics(metrics.registry),
                "rate_limiter": RateLimiter.from_settings(settings.rate_limit),
            }
        ),
        openapi_config=OpenAPIConfig(title="Adaptive query router", version="0.1.0", path="/schema"),
        signature_types=[
            RouterService,
            LiveTuning,
            RecentScores,
            DocumentStore,
            Embedder,
            Bundle,
            RoutingLog,
            OutcomesScorer,
            anyio.CapacityLimiter,
        ],
        logging_config=None,
        request_class=LimitedRequest,
        request_max_body_size=settings.server.max_body_bytes,
    )
    document_errors(app)
    return app
