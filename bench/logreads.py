"""Routing-log reads on a large table: what ``/v1/routing-logs``, a lookup by request id and the drift sample cost
once the log holds ``rows`` records (the default retention cap is a million).

The table is generated, not served: records spread over the hour before now, the newest minute at 190 req/s (the
service's measured saturation on 2 cores), written in large appends and then compacted once by the service's own
``RoutingLog.compact``, which also builds the indexes. Each read is timed next to its reference, the read it
replaced: the whole ``seq`` column for a page, and every ``seq`` of the last hour for the drift sample.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from backends.lancedb.log_table import COMPACT_ROWS
from bench.timing import stats
from router.routing_log.stats import DRIFT_SAMPLE
from router.routing_log.store import RoutingLog
from router.routing_log.table import LIGHT_COLUMNS, LogFilter

BUSY_RATE = 190
"""Records per second in the newest minute."""
APPEND_ROWS = COMPACT_ROWS  # fragments as large as the service's compaction leaves them
PREFILLED = "prefilled"
"""The ``model_version`` of generated records, so that a soak can tell them from the records it caused."""


def records(schema: pa.Schema, seqs: np.ndarray, rng: np.random.Generator) -> pa.Table:
    """Routing records with these ``seq`` values: every column filled in shape, random scores and embeddings."""
    n = len(seqs)
    columns: dict[str, pa.Array] = {}
    for field in schema:
        kind = field.type
        if field.name == "seq":
            columns[field.name] = pa.array(seqs, pa.int64())
        elif field.name == "ts":
            columns[field.name] = pa.array(seqs // 1_000, pa.timestamp("us", tz="UTC"))
        elif field.name == "request_id":
            columns[field.name] = pa.array([uuid.uuid4().hex for _ in range(n)])
        elif field.name == "model_version":
            columns[field.name] = pa.array([PREFILLED] * n)
        elif field.name == "route":
            columns[field.name] = pa.array(rng.choice(["ft", "rag", "both"], n))
        elif pa.types.is_fixed_size_list(kind):
            values = rng.standard_normal(n * kind.list_size).astype(np.float32)
            columns[field.name] = pa.FixedSizeListArray.from_arrays(pa.array(values), kind.list_size)
        elif pa.types.is_string(kind):
            columns[field.name] = pa.array(["x" * 20] * n)
        elif pa.types.is_list(kind):
            columns[field.name] = pa.array([["chunk"]] * n, kind)
        elif pa.types.is_boolean(kind):
            columns[field.name] = pa.array(np.zeros(n, dtype=bool))
        elif pa.types.is_floating(kind):
            columns[field.name] = pa.array(rng.random(n), kind)
        else:
            columns[field.name] = pa.array(np.zeros(n, dtype=np.int64), kind)
    return pa.table(columns, schema=schema)


async def _times(call: Callable[[], Awaitable[Any]], repeats: int = 20) -> dict[str, float]:
    await call()  # warm
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        await call()
        seconds.append(time.perf_counter() - start)
    return stats(seconds)


async def prefill(directory: str, rows: int, dimension: int) -> RoutingLog:
    """A routing log in ``directory`` holding ``rows`` generated records over the hour before now (the newest minute
    at ``BUSY_RATE``), compacted and indexed once as the service does."""
    rng = np.random.default_rng(0)
    now_ns = time.time_ns() // 1_000 * 1_000
    busy = min(rows, BUSY_RATE * 60)
    older = np.linspace(now_ns - 3_600 * 10**9, now_ns - 60 * 10**9, rows - busy, dtype=np.int64)
    newest = np.linspace(now_ns - 60 * 10**9, now_ns, busy, dtype=np.int64)
    seqs = np.concatenate([older, newest]) // 1_000 * 1_000 + np.arange(rows) % 1_000
    log = await RoutingLog.open(directory, "routing_log", dimension, read_consistency=timedelta(0))
    for start in range(0, rows, APPEND_ROWS):
        await log.table.add(records(log.schema, seqs[start : start + APPEND_ROWS], rng))
    return log


async def measure(rows: int, dimension: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-logs-") as directory:
        log = await prefill(directory, rows, dimension)
        began = time.perf_counter()
        await log.compact()
        first_round = time.perf_counter() - began
        page, cursor = await log.find(LogFilter(), 50, LIGHT_COLUMNS)
        hour = LogFilter(since=datetime.now(UTC) - timedelta(hours=1)).predicate()
        return {
            "rows": await log.count(),
            "first_compaction_s": round(first_round, 2),
            "page": await _times(lambda: log.find(LogFilter(), 50, LIGHT_COLUMNS)),
            "next_page": await _times(lambda: log.find(LogFilter(before_seq=cursor), 50, LIGHT_COLUMNS)),
            "page_route_filter": await _times(lambda: log.find(LogFilter(route="rag"), 50, LIGHT_COLUMNS)),
            "lookup": await _times(lambda: log.get(page[10]["request_id"])),
            "drift_sample": await _times(lambda: log.newest(hour, DRIFT_SAMPLE)),
            "reference_whole_seq_column": await _times(lambda: log.column("seq", None), 5),
            "reference_hour_of_seq": await _times(lambda: log.column("seq", hour), 5),
        }
