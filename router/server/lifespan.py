"""The app's lifespan: open the resources, wire the routing-record sinks, run the background loops (thresholds
poll, routing-log flush and retention, drift gauge), and close everything in reverse on the way out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta

import anyio
import structlog
from litestar import Litestar

from backends.errors import BackendError
from models.bundle import BundleError
from models.embedder import EmbedderError
from router.lib.errors import ConfigurationError
from router.lib.metrics import Metrics
from router.lib.settings import Settings
from router.routing.metrics import DecisionMetrics
from router.routing_log.stats import window_drift
from router.routing_log.store import RoutingLog, RoutingLogError
from router.server.resources import Resources, open_resources
from router.thresholds.live import LiveTuning
from router.thresholds.store import ThresholdsStoreError

log = structlog.get_logger("router.server.lifespan")
REFUSALS = (BundleError, EmbedderError, ConfigurationError, BackendError, ThresholdsStoreError, RoutingLogError)
"""What stops the service at start with one line naming what is wrong (settings, bundle, backends, stores)."""
DRIFT_REFRESH_S = 60
DRIFT_WINDOW = timedelta(hours=1)


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    decisions: DecisionMetrics = app.state.decision_metrics
    stack = AsyncExitStack()
    try:
        resources = await stack.enter_async_context(open_resources(settings, sinks=[decisions.observe]))
    except REFUSALS as exc:
        log.error("service_refused", reason=str(exc), error=type(exc).__name__)  # one line naming what is wrong
        raise
    async with stack, anyio.create_task_group() as tasks:
        app.state.resources = resources
        tuning = resources.live.current
        decisions.set_thresholds(tuning.record.version, tuning.policy.cost_weight)
        _start_loops(tasks, resources, app.state.metrics)
        try:
            yield
        finally:
            app.state.resources = None
            tasks.cancel_scope.cancel()


def _start_loops(tasks: anyio.abc.TaskGroup, resources: Resources, metrics: Metrics) -> None:
    settings = resources.settings
    tasks.start_soon(_poll_thresholds, resources.live, settings.thresholds.poll_seconds)
    if resources.routing_log is not None:
        tasks.start_soon(resources.routing_log.run)
        tasks.start_soon(_prune_routing_log, resources.routing_log, settings)
        tasks.start_soon(_refresh_drift, resources, resources.routing_log, metrics)


async def _poll_thresholds(live: LiveTuning, every: float) -> None:
    """Applies a thresholds version written through another replica within ``every`` seconds."""
    while True:
        await anyio.sleep(every)
        await anyio.to_thread.run_sync(live.refresh)


async def _prune_routing_log(routing_log: RoutingLog, settings: Settings) -> None:
    cfg = settings.routing_log
    while True:
        try:
            await routing_log.prune(cfg.retention_days, cfg.max_records)
        except Exception as exc:  # retention must never stop the service; it is retried next round
            log.warning("routing_log_prune_failed", error=str(exc))
        await anyio.sleep(cfg.prune_seconds)


async def _refresh_drift(resources: Resources, routing_log: RoutingLog, metrics: Metrics) -> None:
    """Keeps the drift gauge current for scrapers: the last hour's drift, every minute."""
    while True:
        await anyio.sleep(DRIFT_REFRESH_S)
        try:
            found = await window_drift(resources.bundle, routing_log, datetime.now(UTC) - DRIFT_WINDOW)
        except Exception as exc:  # a failed round keeps the last value; the next one retries
            log.warning("drift_refresh_failed", error=str(exc))
            continue
        if found is not None:
            metrics.set_drift(found["index"])
