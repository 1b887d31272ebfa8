"""The routing log read as statistics: a record as the API shows it, why a decision was made, the window statistics
of ``/v1/stats`` and the drift of recent traffic against the bundle's training reference. Columns are converted
with Arrow and numpy, never a Python object per row."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from backends.lancedb import sql_literal
from models.bundle import Bundle
from models.policy import Policy
from models.reference import DRIFT_ALERT, drift
from models.routes import ROUTES
from router.routing.record import STAGES
from router.routing_log.store import RoutingLog
from router.routing_log.table import LogFilter
from router.thresholds.live import Tuning

MIN_DRIFT_ROWS = 200
"""Fewest records in the window before drift is computed: PSI over 10 bins on fewer is mostly noise (about 0.2 on
120 in-distribution questions, 0.06 on 420)."""
DRIFT_SAMPLE = 5_000
"""Newest records whose embeddings the drift index uses."""
CONFIDENCE_EDGES = [round(0.05 * i, 2) for i in range(21)]


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


def explain(row: dict[str, Any], live: Tuning, bundle: Bundle) -> dict[str, Any]:
    """Why this route: each route's score against its threshold and its utility under the knob used, and the
    nearest labelled training questions with what worked for them."""
    thresholds = live.record.thresholds
    same_version = row["thresholds_version"] == live.record.version
    policy = Policy(thresholds, float(row["cost_weight"]), bundle.costs)
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
    reference = bundle.reference
    neighbours = (
        [
            {"question": n.question, "best_route": n.best_route, "similarity": n.similarity, "em": n.em}
            for n in reference.nearest(np.asarray(row["vector"], dtype=np.float32))
        ]
        if reference is not None and row["model_version"] == bundle.version
        else []
    )
    return {
        "chosen": row["route"],
        "chosen_by": row["route_source"],
        "cost_weight": row["cost_weight"],
        "thresholds_note": None
        if same_version
        else f"thresholds shown are the live version {live.record.version}, "
        f"not version {row['thresholds_version']} the decision used",
        "margins": margins,
        "neighbours": neighbours,
    }


def percentiles(values: np.ndarray) -> dict[str, float | None]:
    if len(values) == 0:
        return {"p50": None, "p95": None, "p99": None}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50": round(float(p50), 2), "p95": round(float(p95), 2), "p99": round(float(p99), 2)}


async def window_stats(log: RoutingLog, bundle: Bundle, seconds: int, buckets: int) -> dict[str, Any]:
    """The route mix over ``buckets`` slices of the last ``seconds``, latency percentiles per stage and route,
    the confidence histograms, fallbacks by reason and drift (``GET /v1/stats``)."""
    until = datetime.now(UTC)
    since = until - timedelta(seconds=seconds)
    where = LogFilter(since=since).predicate()
    columns = ["seq", "ts", "route", "status", "fallback", "fallback_reason", "score_ft", "score_rag",
               "score_both", *(f"ms_{stage}" for stage in STAGES)]  # fmt: skip
    table = await log.arrow(where, columns)
    n = table.num_rows
    routes = labels(table.column("route"))
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
    answered = np.isin(labels(table.column("status")), ["answered", "no_answer"])  # the answering stages ran
    latency = {
        stage: percentiles(values if stage in ("embed", "classify", "total") else values[answered])
        for stage, values in stages.items()
    }
    scores = np.column_stack([table.column(f"score_{r}").to_numpy() for r in ROUTES]) if n else np.zeros((0, 3))
    counted = pc.value_counts(table.column("fallback_reason").drop_null()).to_pylist()
    reasons: dict[str, int] = {c["values"]: int(c["counts"]) for c in counted if c["values"]}
    return {
        "window_seconds": seconds,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "requests": n,
        "mix": {route: round(float((routes == route).mean()), 4) if n else 0.0 for route in ROUTES},
        "buckets": series,
        "latency_ms": latency,
        "latency_by_route_ms": {route: percentiles(stages["total"][routes == route]) for route in ROUTES},
        "confidence": {
            route: {
                "edges": CONFIDENCE_EDGES,
                "counts": np.histogram(scores[:, j], bins=CONFIDENCE_EDGES)[0].tolist(),
            }
            for j, route in enumerate(ROUTES)
        },
        "fallback_rate": round(float(fallback.mean()), 4) if n else 0.0,
        "fallbacks_by_reason": reasons,
        "drift": await window_drift(bundle, log, since) if n >= MIN_DRIFT_ROWS else None,
    }


def labels(column: pa.ChunkedArray) -> npt.NDArray[np.object_]:
    """A string column as a numpy array that shares one Python string per distinct value. Converting row by row
    made a Python object per row: at a day of records that left the process hundreds of MiB larger."""
    encoded = column.combine_chunks().dictionary_encode()
    names = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
    return names[np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.intp)]


def matrix(column: pa.ChunkedArray) -> npt.NDArray[np.float32]:
    """A fixed-size-list vector column as a 2-D float32 array, without a Python float per value."""
    if len(column) == 0:
        return np.zeros((0, column.type.list_size), dtype=np.float32)
    flat = column.combine_chunks().flatten().to_numpy()
    return np.asarray(flat, dtype=np.float32).reshape(len(column), column.type.list_size)


async def window_drift(bundle: Bundle, log: RoutingLog, since: datetime) -> dict[str, Any] | None:
    """Drift of the newest ``DRIFT_SAMPLE`` records since ``since`` (this bundle's) against the bundle's training
    reference; None without a reference or with fewer than ``MIN_DRIFT_ROWS`` records."""
    reference = bundle.reference
    if reference is None:
        return None
    where = f"{LogFilter(since=since).predicate()} AND model_version = {sql_literal(bundle.version)}"
    seqs = await log.newest(where, DRIFT_SAMPLE)
    if len(seqs) < MIN_DRIFT_ROWS:
        return None
    table = await log.arrow(f"{where} AND seq >= {int(seqs[-1])}", ["vector", *(f"score_{r}" for r in ROUTES)])
    vectors = matrix(table.column("vector"))
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
