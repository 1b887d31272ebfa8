"""Reading the durable routing log: ``/v1/routing-logs`` (filtered, paginated, one decision explained) and
``/v1/stats`` (mix over time, latency, confidence, fallbacks, drift).

Reads need the admin key when ``routing_log.protect_reads`` is set (the records hold query text).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from litestar import Controller, get
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException, ServiceUnavailableException, ValidationException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromPath, FromQuery, QueryParameter

from backends.lancedb import sql_literal
from models.policy import Policy
from models.reference import DRIFT_ALERT, drift
from models.routes import ROUTES
from router.auth import require_admin
from router.routing_log import LIGHT_COLUMNS, STAGES, LogFilter, RoutingLog
from router.service import RouterService

MAX_PAGE = 500
MIN_DRIFT_ROWS = 200
"""Fewest records in the window before drift is computed: PSI over 10 bins on fewer is mostly noise (about 0.2 on
120 in-distribution questions, 0.06 on 420)."""
DRIFT_SAMPLE = 5_000
"""Newest records whose embeddings the drift index uses."""
CONFIDENCE_EDGES = [round(0.05 * i, 2) for i in range(21)]


def require_log_reader(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    if connection.app.state.settings.routing_log.protect_reads:
        require_admin(connection, handler)


def _log(service: RouterService) -> RoutingLog:
    if service.routing_log is None:
        raise ServiceUnavailableException("the routing log is disabled (routing_log.enabled)")
    return service.routing_log


def record_view(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row as the API shows it: scores, timings and the fallback grouped; the vector left out."""
    return {
        "seq": str(row["seq"]),
        "ts": row["ts"].isoformat(),
        "request_id": row["request_id"],
        "endpoint": row["endpoint"],
        "query": row["query"],
        "route": row["route"],
        "route_source": row["route_source"],
        "scores": {route: round(float(row[f"score_{route}"]), 4) for route in ROUTES},
        "cost_weight": row["cost_weight"],
        "knob_source": row["knob_source"],
        "thresholds_version": row["thresholds_version"],
        "model_version": row["model_version"],
        "status": row["status"],
        "answered_by": row["answered_by"],
        "llm_model": row["llm_model"],
        "fallback": {"to": row["fallback_to"], "reason": row["fallback_reason"]} if row["fallback"] else None,
        "failures": json.loads(row["failures"]),
        "source_ids": list(row["source_ids"]),
        "answer_chars": row["answer_chars"],
        "timings_ms": {stage: round(float(row[f"ms_{stage}"]), 2) for stage in STAGES},
    }


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValidationException(f"{name} must be an ISO 8601 time, e.g. 2026-11-21T10:00:00Z") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _bounds(values: dict[str, float | None]) -> dict[str, float]:
    return {route: value for route, value in values.items() if value is not None}


class RoutingLogsController(Controller):
    path = "/v1/routing-logs"
    tags = ("routing log",)
    guards = (require_log_reader,)

    @get("", summary="Routing records, newest first, filtered and paginated")
    async def list_records(
        self,
        service: NamedDependency[RouterService],
        since: FromQuery[str | None] = None,
        until: FromQuery[str | None] = None,
        route: Annotated[str | None, QueryParameter(pattern="^(ft|rag|both)$")] = None,
        status: Annotated[str | None, QueryParameter(pattern="^(decided|answered|no_answer)$")] = None,
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
            before_seq=int(cursor) if cursor else None,
        )
        log = _log(service)
        await log.flush()  # what was decided before this call is listed
        rows, following = await log.find(where, limit, LIGHT_COLUMNS)
        return {"records": [record_view(r) for r in rows], "next_cursor": str(following) if following else None}

    @get("/{request_id:str}", summary="One decision with its explanation")
    async def one(self, request_id: FromPath[str], service: NamedDependency[RouterService]) -> dict[str, Any]:
        log = _log(service)
        await log.flush()
        rows = await log.get(request_id)
        if not rows:
            raise NotFoundException(f"no routing record with request id {request_id!r}")
        row = max(rows, key=lambda r: r["seq"])
        return record_view(row) | {"explanation": explain(row, service)}


def explain(row: dict[str, Any], service: RouterService) -> dict[str, Any]:
    """Why this route: each route's score against its threshold and its utility under the knob used, and the
    nearest labelled training questions with what worked for them."""
    thresholds = service.tuning.record.thresholds
    same_version = row["thresholds_version"] == service.tuning.record.version
    policy = Policy(thresholds, float(row["cost_weight"]), service.bundle.costs)
    margins = {}
    for route, cost in zip(ROUTES, policy.costs, strict=True):
        score = float(row[f"score_{route}"])
        floor = getattr(thresholds, route)
        margins[route] = {
            "score": round(score, 4),
            "threshold": floor,
            "margin": round(score - floor, 4),
            "above_threshold": score >= floor,
            "utility": round(score - policy.cost_weight * cost, 4),
        }
    reference = service.bundle.reference
    neighbours = (
        [
            {"question": n.question, "best_route": n.best_route, "similarity": n.similarity, "em": n.em}
            for n in reference.nearest(np.asarray(row["vector"], dtype=np.float32))
        ]
        if reference is not None and row["model_version"] == service.bundle.version
        else []
    )
    return {
        "chosen": row["route"],
        "chosen_by": row["route_source"],
        "cost_weight": row["cost_weight"],
        "thresholds_note": None
        if same_version
        else f"thresholds shown are the live version {service.tuning.record.version}, "
        f"not version {row['thresholds_version']} the decision used",
        "margins": margins,
        "neighbours": neighbours,
    }


UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
MAX_WINDOW = 90 * 86_400


def _duration(window: str) -> int:
    unit = window[-1] if window[-1] in UNITS else "s"
    seconds = int(window.rstrip("smhd")) * UNITS[unit]
    if not 60 <= seconds <= MAX_WINDOW:
        raise ValidationException(f"window must be between 60 s and 90 days, got {window}")
    return seconds


def _percentiles(values: np.ndarray) -> dict[str, float | None]:
    if len(values) == 0:
        return {"p50": None, "p95": None, "p99": None}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50": round(float(p50), 2), "p95": round(float(p95), 2), "p99": round(float(p99), 2)}


class StatsController(Controller):
    path = "/v1/stats"
    tags = ("routing log",)
    guards = (require_log_reader,)

    @get("", summary="Route mix over time, latency, confidence, fallbacks and drift over a window")
    async def stats(
        self,
        service: NamedDependency[RouterService],
        state: State,
        window: Annotated[
            str, QueryParameter(pattern=r"^[0-9]+[smhd]?$", description="seconds, or with a unit: 15m, 1h, 7d")
        ] = "3600",
        buckets: Annotated[int, QueryParameter(ge=1, le=500)] = 30,
    ) -> dict[str, Any]:
        seconds = _duration(window)
        log = _log(service)
        await log.flush()
        until = datetime.now(UTC)
        since = until - timedelta(seconds=seconds)
        where = LogFilter(since=since).predicate()
        columns = ["seq", "ts", "route", "status", "fallback", "fallback_reason", "score_ft", "score_rag",
                   "score_both", *(f"ms_{stage}" for stage in STAGES)]  # fmt: skip
        table = await log.arrow(where, columns)
        n = table.num_rows
        routes = _labels(table.column("route"))
        ts = table.column("ts").cast(pa.int64()).to_numpy().astype(np.float64) / 1e6
        fallback = np.asarray(table.column("fallback").to_numpy(), dtype=bool)
        width = seconds / buckets
        index = np.clip(((ts - since.timestamp()) // width).astype(int), 0, buckets - 1) if n else np.array([], int)
        series = []
        for b in range(buckets):
            inside = index == b
            series.append(
                {
                    "start": (since + timedelta(seconds=b * width)).isoformat(),
                    "requests": int(inside.sum()),
                    "counts": {route: int((routes[inside] == route).sum()) for route in ROUTES},
                    "fallbacks": int(fallback[inside].sum()),
                }
            )
        stages = {stage: np.asarray(table.column(f"ms_{stage}").to_numpy(), dtype=np.float64) for stage in STAGES}
        answered = _labels(table.column("status")) != "decided"
        latency = {
            stage: _percentiles(values if stage in ("embed", "classify", "total") else values[answered])
            for stage, values in stages.items()
        }
        scores = np.column_stack([table.column(f"score_{r}").to_numpy() for r in ROUTES]) if n else np.zeros((0, 3))
        counted = pc.value_counts(table.column("fallback_reason").drop_null()).to_pylist()
        reasons: dict[str, int] = {c["values"]: int(c["counts"]) for c in counted if c["values"]}
        result = {
            "window_seconds": seconds,
            "since": since.isoformat(),
            "until": until.isoformat(),
            "requests": n,
            "mix": {route: round(float((routes == route).mean()), 4) if n else 0.0 for route in ROUTES},
            "buckets": series,
            "latency_ms": latency,
            "latency_by_route_ms": {route: _percentiles(stages["total"][routes == route]) for route in ROUTES},
            "confidence": {
                route: {
                    "edges": CONFIDENCE_EDGES,
                    "counts": np.histogram(scores[:, j], bins=CONFIDENCE_EDGES)[0].tolist(),
                }
                for j, route in enumerate(ROUTES)
            },
            "fallback_rate": round(float(fallback.mean()), 4) if n else 0.0,
            "fallbacks_by_reason": reasons,
            "drift": await window_drift(service, log, since) if n >= MIN_DRIFT_ROWS else None,
        }
        metrics = getattr(state, "metrics", None)
        if metrics is not None and result["drift"] is not None:
            metrics.set_drift(result["drift"]["index"])
        return result


def _labels(column: pa.ChunkedArray) -> npt.NDArray[np.object_]:
    """A string column as a numpy array that shares one Python string per distinct value. Converting row by row
    made a Python object per row: at a day of records that left the process hundreds of MiB larger."""
    encoded = column.combine_chunks().dictionary_encode()
    names = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
    return names[np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.intp)]


def _matrix(column: pa.ChunkedArray) -> npt.NDArray[np.float32]:
    """A fixed-size-list vector column as a 2-D float32 array, without a Python float per value."""
    if len(column) == 0:
        return np.zeros((0, column.type.list_size), dtype=np.float32)
    flat = column.combine_chunks().flatten().to_numpy()
    return np.asarray(flat, dtype=np.float32).reshape(len(column), column.type.list_size)


async def window_drift(service: RouterService, log: RoutingLog, since: datetime) -> dict[str, Any] | None:
    """Drift of the newest ``DRIFT_SAMPLE`` records since ``since`` (this bundle's) against the bundle's training
    reference; None without a reference or with fewer than ``MIN_DRIFT_ROWS`` records."""
    reference = service.bundle.reference
    if reference is None:
        return None
    where = f"{LogFilter(since=since).predicate()} AND model_version = {sql_literal(service.bundle.version)}"
    seqs = await log.newest(where, DRIFT_SAMPLE)
    if len(seqs) < MIN_DRIFT_ROWS:
        return None
    table = await log.arrow(f"{where} AND seq >= {int(seqs[-1])}", ["vector", *(f"score_{r}" for r in ROUTES)])
    vectors = _matrix(table.column("vector"))
    live = np.column_stack([table.column(f"score_{r}").to_numpy() for r in ROUTES]).astype(np.float64)
    found = drift(reference, live, vectors)
    return {
        "index": found.index,
        "alert_level": DRIFT_ALERT,
        "alert": found.alert,
        "scores": found.scores,
        "embedding": found.embedding,
        "live_rows": len(live),
        "reference_rows": len(reference.questions),
    }
