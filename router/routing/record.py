"""The routing record: one typed value per request, built once when the request ends (answered or not) and handed
to its sinks, in order: the ``route_decided`` log line, the decision metrics, the durable routing log's writer and
the thresholds' recent-traffic buffer (wired in ``router.server.lifespan``). Nothing flows back into the path."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import structlog

from models.routes import ROUTES, Step
from router.lib.logging import current_request_id
from router.routing.answering import Attempt
from router.routing.decision import Decision
from router.routing.schemas import Fallback, GeneratorName, Timings

log = structlog.get_logger("router.routing.record")

Endpoint = Literal["route", "query"]
Status = Literal["decided", "answered", "no_answer", "client_left"]
"""``client_left``: a streamed query whose client went away after its decision, before an answer started."""
STAGES = ("embed", "classify", "retrieve", "generate", "total")
"""The timed stages of a request, in the order they run (``Timings``' fields)."""

_counter = itertools.count()


def next_seq() -> int:
    """A record's ordering key: microseconds since the epoch x 1,000 plus a per-process counter."""
    return time.time_ns() // 1_000 * 1_000 + next(_counter) % 1_000


@dataclass(frozen=True)
class RoutingRecord:
    """What was decided for one request, how it was answered, and what it cost."""

    endpoint: Endpoint
    status: Status
    decision: Decision
    model_version: str
    timings: Timings
    answered_by: Step | None = None
    generator: GeneratorName | None = None
    llm_model: str | None = None
    fallback: Fallback | None = None
    failures: tuple[Attempt, ...] = ()
    source_ids: tuple[str, ...] = ()
    answer_chars: int = 0
    request_id: str = field(default_factory=lambda: current_request_id() or "")
    seq: int = field(default_factory=next_seq)
    ts: datetime = field(default_factory=lambda: datetime.now(UTC))

    def timings_ms(self) -> dict[str, float]:
        return {stage: getattr(self.timings, stage) for stage in STAGES}


Sink = Callable[[RoutingRecord], None]
"""Takes every routing record as it is made; must not block (the routing-log writer only buffers)."""


def log_record(record: RoutingRecord) -> None:
    """The ``route_decided`` line: the whole record but the embedding."""
    decision = record.decision
    log.info(
        "route_decided",
        query=decision.text,  # the text, or its hash and length: log.query_text (router.lib.logging)
        route=decision.route,
        route_source=decision.source,
        scores={r: getattr(decision.scores, r) for r in ROUTES},
        thresholds=decision.tuning.record.thresholds.as_dict(),
        cost_weight=decision.tuning.policy.cost_weight,
        knob_source=decision.knob_source,
        thresholds_version=decision.tuning.record.version,
        model_version=record.model_version,
        batch_size=decision.batch_size,
        endpoint=record.endpoint,
        status=record.status,
        timings_ms=record.timings_ms(),
        **_answer_fields(record) if record.endpoint == "query" else {},
    )


def _answer_fields(record: RoutingRecord) -> dict[str, object]:
    fallback = record.fallback
    return {
        "answered_by": record.answered_by,
        "fallback": {"from": fallback.from_, "to": fallback.to, "reason": fallback.reason} if fallback else None,
        "failures": [a.as_dict() for a in record.failures],
        "generator": record.generator,
        "llm_model": record.llm_model,
        "source_ids": list(record.source_ids),
        "answer_chars": record.answer_chars,
    }
