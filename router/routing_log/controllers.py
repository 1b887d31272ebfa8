"""Reading the durable routing log: ``/v1/routing-logs`` (filtered, paginated, one decision explained) and
``/v1/stats`` (mix over time, latency, confidence, fallbacks, drift).

Reads need the admin key when ``routing_log.protect_reads`` is set (the records hold query text).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from litestar import Controller, get
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException, ServiceUnavailableException, ValidationException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromPath, FromQuery, QueryParameter

from models.bundle import Bundle
from router.lib.auth import require_admin
from router.routing_log.stats import explain, record_view, window_stats
from router.routing_log.store import RoutingLog
from router.routing_log.table import LIGHT_COLUMNS, LogFilter
from router.thresholds.live import LiveTuning

MAX_PAGE = 500


def require_log_reader(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    if connection.app.state.settings.routing_log.protect_reads:
        require_admin(connection, handler)


def _log(routing_log: RoutingLog | None) -> RoutingLog:
    if routing_log is None:
        raise ServiceUnavailableException("the routing log is disabled (routing_log.enabled)")
    return routing_log


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValidationException(f"{name} must be an ISO 8601 time, e.g. 2026-11-21T10:00:00Z") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _cursor(value: str | None) -> int | None:
    """A page cursor: a ``seq`` this service returned, so within the 64-bit column it indexes."""
    if value is None:
        return None
    if int(value) >= 2**63:
        raise ValidationException(f"cursor {value} is not one this service returned (next_cursor of a page)")
    return int(value)


def _bounds(values: dict[str, float | None]) -> dict[str, float]:
    return {route: value for route, value in values.items() if value is not None}


class RoutingLogsController(Controller):
    path = "/v1/routing-logs"
    tags = ("routing log",)
    guards = (require_log_reader,)

    @get("", summary="Routing records, newest first, filtered and paginated")
    async def list_records(
        self,
        routing_log: NamedDependency[RoutingLog | None],
        since: FromQuery[str | None] = None,
        until: FromQuery[str | None] = None,
        route: Annotated[str | None, QueryParameter(pattern="^(ft|rag|both)$")] = None,
        status: Annotated[str | None, QueryParameter(pattern="^(decided|answered|no_answer|client_left)$")] = None,
        fallback: FromQuery[bool | None] = None,
        text: Annotated[str | None, QueryParameter(max_length=200)] = None,
        min_ft: Annotated[float | None, QueryParameter(ge=0, le=1)] = None,
        min_rag: Annotated[float | None, QueryParameter(ge=0, le=1)] = None,
        min_both: Annotated[float | None, QueryParameter(ge=0, le=1)] = None,
        max_ft: Annotated[float | None, QueryParameter(ge=0, le=1)] = None,
        max_rag: Annotated[float | None, QueryParameter(ge=0, le=1)] = None,
        max_both: Annotated[float | None, QueryParameter(ge=0, le=1)] = None,
        cursor: Annotated[str | None, QueryParameter(pattern="^[0-9]{1,19}$")] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 50,
    ) -> dict[str, Any]:
        where = LogFilter(
            since=_time(since, "since"),
            until=_time(until, "until"),
            route=route,
            status=status,
            fallback=fallback,
            text=text,
            min_scores=_bounds({"ft": min_ft, "rag": min_rag, "both": min_both}),
            max_scores=_bounds({"ft": max_ft, "rag": max_rag, "both": max_both}),
            before_seq=_cursor(cursor),
        )
        log = _log(routing_log)
        await log.flush()  # what was decided before this call is listed
        rows, following = await log.find(where, limit, LIGHT_COLUMNS)
        return {"records": [record_view(r) for r in rows], "next_cursor": str(following) if following else None}

    @get("/{request_id:str}", summary="One decision with its explanation")
    async def one(
        self,
        request_id: FromPath[str],
        routing_log: NamedDependency[RoutingLog | None],
        live: NamedDependency[LiveTuning],
        bundle: NamedDependency[Bundle],
    ) -> dict[str, Any]:
        log = _log(routing_log)
        await log.flush()
        rows = await log.get(request_id)
        if not rows:
            raise NotFoundException(f"no routing record with request id {request_id!r}")
        row = max(rows, key=lambda r: r["seq"])
        return record_view(row) | {"explanation": explain(row, live.current, bundle)}


UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
MAX_WINDOW = 90 * 86_400


def _duration(window: str) -> int:
    unit = window[-1] if window[-1] in UNITS else "s"
    seconds = int(window.rstrip("smhd")) * UNITS[unit]
    if not 60 <= seconds <= MAX_WINDOW:
        raise ValidationException(f"window must be between 60 s and 90 days, got {window}")
    return seconds


class StatsController(Controller):
    path = "/v1/stats"
    tags = ("routing log",)
    guards = (require_log_reader,)

    @get("", summary="Route mix over time, latency, confidence, fallbacks and drift over a window")
    async def stats(
        self,
        routing_log: NamedDependency[RoutingLog | None],
        bundle: NamedDependency[Bundle],
        state: State,
        window: Annotated[
            str, QueryParameter(pattern=r"^[0-9]+[smhd]?$", description="seconds, or with a unit: 15m, 1h, 7d")
        ] = "3600",
        buckets: Annotated[int, QueryParameter(ge=1, le=500)] = 30,
    ) -> dict[str, Any]:
        seconds = _duration(window)
        log = _log(routing_log)
        await log.flush()
        result = await window_stats(log, bundle, seconds, buckets)
        metrics = getattr(state, "metrics", None)
        if metrics is not None and result["drift"] is not None:
            metrics.set_drift(result["drift"]["index"])
        return result
