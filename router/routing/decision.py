"""Deciding: clean the query, embed it and score the routes (in micro-batches, off the event loop), then apply the
policy with the live thresholds (or the request's own knob).

Embedding and scoring run in a worker thread in micro-batches shared by concurrent requests
(:mod:`router.routing.batching`); a full queue sheds the request at once (:class:`~router.lib.errors.Overloaded`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import structlog

from models.bundle import Bundle
from models.embedder import Embedder
from models.policy import MAX_COST_WEIGHT, decide
from models.routes import ROUTES, Route
from router.lib.errors import InvalidQuery, Overloaded
from router.lib.text import check_text
from router.routing.batching import MicroBatcher, QueueFull
from router.routing.schemas import KnobSource, RouteSource, Scores
from router.thresholds.live import LiveTuning, Tuning

log = structlog.get_logger("router.routing.decision")


def elapsed_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


@dataclass(frozen=True)
class Scored:
    """One query's embedding and route probabilities, with the cost of the batch it was computed in."""

    vector: npt.NDArray[np.float32]
    probabilities: npt.NDArray[np.float64]
    embed_ms: float
    classify_ms: float


@dataclass(frozen=True)
class Decision:
    route: Route
    source: RouteSource
    scores: Scores
    vector: npt.NDArray[np.float32]
    embed_ms: float
    """From the request's arrival at the batcher to its embedding: queueing and the batch's forward pass."""
    classify_ms: float
    batch_size: int
    tuning: Tuning
    """The thresholds and knob this request was decided with (the knob may be the request's own)."""
    knob_source: KnobSource
    text: str


class Decider:
    """Turns query text into a :class:`Decision`: the one place that embeds, scores and applies the policy."""

    def __init__(
        self,
        embedder: Embedder,
        bundle: Bundle,
        live: LiveTuning,
        *,
        max_query_chars: int,
        knob_range: tuple[float, float] | None = (0.0, MAX_COST_WEIGHT),
        max_batch: int = 8,
        max_wait: float = 0.0,
        max_queue: int | None = 256,
    ) -> None:
        """``knob_range``: bounds of a request's own ``cost_weight`` (None refuses it). ``max_queue``: queries
        waiting to be decided past which a request is answered 503 at once (None: no bound)."""
        self.embedder = embedder
        self.bundle = bundle
        self.live = live
        self.max_query_chars = max_query_chars
        self.knob_range = knob_range
        self.batcher = MicroBatcher(self._score, max_batch=max_batch, max_wait=max_wait, max_queue=max_queue)

    def _score(self, texts: list[str]) -> list[Scored]:
        """Embeds and scores a batch of queries (in the batcher's worker thread)."""
        start = time.perf_counter()
        vectors = self.embedder.encode(texts)
        embed_ms, start = elapsed_ms(start), time.perf_counter()
        probabilities = self.bundle.classifier.predict_proba(vectors, texts)
        classify_ms = elapsed_ms(start)
        return [Scored(v, p, embed_ms, classify_ms) for v, p in zip(vectors, probabilities, strict=True)]

    def clean(self, query: str) -> str:
        """The query as it is decided: checked for control characters, stripped, within the length limit."""
        check_text(query, "query")
        text = query.strip()
        if not text:
            raise InvalidQuery("query is empty or whitespace")
        if len(text) > self.max_query_chars:
            raise InvalidQuery(f"query is {len(text)} characters; the limit is {self.max_query_chars}")
        return text

    def tuning_for(self, cost_weight: float | None) -> tuple[Tuning, KnobSource]:
        """The live tuning, or a copy with the request's own knob when it is within ``knob_range``."""
        tuning = self.live.current
        if cost_weight is None:
            return tuning, "live"
        if self.knob_range is None:
            raise InvalidQuery("this service does not take a per-request cost_weight (thresholds.request_knob_range)")
        low, high = self.knob_range
        if not low <= cost_weight <= high:
            raise InvalidQuery(f"cost_weight {cost_weight:g} is outside the allowed range [{low:g}, {high:g}]")
        return replace(tuning, policy=replace(tuning.policy, cost_weight=cost_weight)), "request"

    async def decide(self, text: str, forced: Route | None = None, cost_weight: float | None = None) -> Decision:
        """The decision for ``text`` (already :meth:`clean`); ``forced`` is a route the caller asked for."""
        tuning, knob_source = self.tuning_for(cost_weight)
        try:
            batched = await self.batcher.submit(text)
        except QueueFull as exc:
            log.warning("request_shed", reason="decider_queue_full", detail=str(exc))
            raise Overloaded(f"the service is at capacity ({exc}; embedder.max_queue); retry in a moment") from exc
        scored = batched.value
        scores: dict[str, float] = {r: round(float(p), 4) for r, p in zip(ROUTES, scored.probabilities, strict=True)}
        return Decision(
            route=forced or decide(scores, tuning.policy),
            source="request" if forced else "policy",
            scores=Scores(**scores),
            vector=scored.vector,
            embed_ms=round(batched.wait_ms + scored.embed_ms, 2),
            classify_ms=scored.classify_ms,
            batch_size=batched.batch_size,
            tuning=tuning,
            knob_source=knob_source,
            text=text,
        )

    async def close(self) -> None:
        await self.batcher.close()
