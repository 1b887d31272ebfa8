"""The routing log's table format: one row per routing record (:func:`to_row`), its Arrow schema, and the filters
its readers use (:class:`LogFilter`, turned into LanceDB SQL).

Rows are read newest first by ``seq``: microseconds since the epoch times 1,000 plus a per-process counter, unique
across replicas in practice and usable as a pagination cursor.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from backends.lancedb import sql_literal, timestamp_literal
from models.routes import ROUTES
from router.lib.logging import query_digest
from router.routing.record import STAGES, RoutingRecord

QueryText = Literal["full", "hash"]
INDEXED = ("seq", "ts", "request_id")
"""Columns with a B-tree index: the page cursor, the time windows of stats and drift, and lookups by request id.
Rows appended since the last compaction are not in the indexes yet; queries scan those directly."""


def schema(dimension: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("seq", pa.int64(), nullable=False),
            pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
            pa.field("request_id", pa.string(), nullable=False),
            pa.field("endpoint", pa.string(), nullable=False),
            pa.field("query", pa.string(), nullable=False),
            pa.field("route", pa.string(), nullable=False),
            pa.field("route_source", pa.string(), nullable=False),
            *(pa.field(f"score_{route}", pa.float32(), nullable=False) for route in ROUTES),
            pa.field("cost_weight", pa.float64(), nullable=False),
            pa.field("knob_source", pa.string(), nullable=False),
            pa.field("thresholds_version", pa.int64(), nullable=False),
            pa.field("model_version", pa.string(), nullable=False),
            pa.field("status", pa.string(), nullable=False),
            pa.field("answered_by", pa.string()),
            pa.field("llm_model", pa.string()),
            pa.field("fallback", pa.bool_(), nullable=False),
            pa.field("fallback_to", pa.string()),
            pa.field("fallback_reason", pa.string()),
            pa.field("failures", pa.string(), nullable=False),
            pa.field("source_ids", pa.list_(pa.string()), nullable=False),
            pa.field("answer_chars", pa.int64(), nullable=False),
            *(pa.field(f"ms_{stage}", pa.float32(), nullable=False) for stage in STAGES),
            pa.field("vector", pa.list_(pa.float32(), dimension), nullable=False),
        ]
    )


def to_row(record: RoutingRecord, query_text: QueryText = "full") -> dict[str, Any]:
    """The routing record as a row of this table (:func:`schema`): the query text as ``query_text`` says, the
    failures as a JSON array."""
    decision, fallback = record.decision, record.fallback
    return {
        "seq": record.seq,
        "ts": record.ts,
        "request_id": record.request_id,
        "endpoint": record.endpoint,
        "query": query_digest(decision.text) if query_text == "hash" else decision.text,
        "route": decision.route,
        "route_source": decision.source,
        **{f"score_{r}": getattr(decision.scores, r) for r in ROUTES},
        "cost_weight": decision.tuning.policy.cost_weight,
        "knob_source": decision.knob_source,
        "thresholds_version": decision.tuning.record.version,
        "model_version": record.model_version,
        "status": record.status,
        "answered_by": record.answered_by,
        "llm_model": record.llm_model,
        "fallback": fallback is not None,
        "fallback_to": fallback.to if fallback else None,
        "fallback_reason": fallback.reason if fallback else None,
        "failures": json.dumps([a.as_dict() for a in record.failures], separators=(",", ":")),
        "source_ids": list(record.source_ids),
        "answer_chars": record.answer_chars,
        **{f"ms_{stage}": ms for stage, ms in record.timings_ms().items()},
        "vector": decision.vector.astype(np.float32),
    }


LIGHT_COLUMNS = [field.name for field in schema(1) if field.name != "vector"]
"""Every column but the embedding: what listings and exports read."""


@dataclass(frozen=True)
class LogFilter:
    """Which records to read; every field narrows (AND)."""

    since: datetime | None = None
    until: datetime | None = None
    route: str | None = None
    fallback: bool | None = None
    status: str | None = None
    text: str | None = None
    """Substring of the query text (case-sensitive; no match when query text is stored hashed)."""
    min_scores: Mapping[str, float] | None = None
    max_scores: Mapping[str, float] | None = None
    before_seq: int | None = None
    after_seq: int | None = None

    def predicate(self) -> str | None:
        clauses = []
        if self.since:
            clauses.append(f"ts >= {timestamp_literal(self.since)}")
        if self.until:
            clauses.append(f"ts < {timestamp_literal(self.until)}")
        if self.route:
            clauses.append(f"route = {sql_literal(self.route)}")
        if self.fallback is not None:
            clauses.append(f"fallback = {str(self.fallback).lower()}")
        if self.status:
            clauses.append(f"status = {sql_literal(self.status)}")
        if self.text:
            escaped = self.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clauses.append(f"query LIKE {sql_literal('%' + escaped + '%')} ESCAPE '\\'")
        for bounds, op in ((self.min_scores, ">="), (self.max_scores, "<=")):
            for route, value in (bounds or {}).items():
                if route not in ROUTES:
                    raise ValueError(f"unknown route {route!r} in a score bound; routes are {list(ROUTES)}")
                clauses.append(f"score_{route} {op} {float(value)!r}")
        if self.before_seq is not None:
            clauses.append(f"seq < {int(self.before_seq)}")
        if self.after_seq is not None:
            clauses.append(f"seq > {int(self.after_seq)}")
        return " AND ".join(clauses) or None
