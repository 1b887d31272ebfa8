"""The request path: embed -> score -> policy (the decision), then retrieve -> generate (the answer).

CPU-bound embedding runs in a worker thread behind a limiter, off the event loop. Each request ends with one
``route_decided`` event carrying the whole routing record.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import numpy as np
import numpy.typing as npt
import structlog

from backends.generators import Generator
from backends.lancedb import DocumentStore, Passage
from models.bundle import Bundle, ThresholdsRecord
from models.embedder import Embedder
from models.policy import Policy, decide
from models.routes import ROUTES, Route
from router.errors import InvalidQuery
from router.logs import current_request_id
from router.schemas import QueryResponse, RouteResponse, RouteSource, Scores, Source, Timings

log = structlog.get_logger("router.decision")


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


@dataclass(frozen=True)
class Decision:
    route: Route
    source: RouteSource
    scores: Scores
    vector: npt.NDArray[np.float32]
    embed_ms: float
    classify_ms: float


@dataclass
class RouterService:
    embedder: Embedder
    bundle: Bundle
    thresholds: ThresholdsRecord
    policy: Policy
    store: DocumentStore
    generator: Generator
    limiter: anyio.CapacityLimiter
    max_query_chars: int
    default_top_k: int

    def _clean(self, query: str) -> str:
        text = query.strip()
        if not text:
            raise InvalidQuery("query is empty or whitespace")
        if len(text) > self.max_query_chars:
            raise InvalidQuery(f"query is {len(text)} characters; the limit is {self.max_query_chars}")
        return text

    async def _decide(self, query: str, forced: Route | None) -> Decision:
        start = time.perf_counter()
        vectors = await anyio.to_thread.run_sync(self.embedder.encode, [query], limiter=self.limiter)
        embed_ms, start = _ms(start), time.perf_counter()
        probabilities = self.bundle.classifier.predict_proba(vectors, [query])[0]
        scores: dict[str, float] = {route: round(float(p), 4) for route, p in zip(ROUTES, probabilities, strict=True)}
        route = forced or decide(scores, self.policy)
        source: RouteSource = "request" if forced else "policy"
        return Decision(route, source, Scores(**scores), vectors[0], embed_ms, _ms(start))

    def _record(self, decision: Decision, **fields: object) -> None:
        log.info(
            "route_decided",
            route=decision.route,
            route_source=decision.source,
            scores={r: getattr(decision.scores, r) for r in ROUTES},
            thresholds=self.thresholds.thresholds.as_dict(),
            cost_weight=self.thresholds.cost_weight,
            thresholds_version=self.thresholds.version,
            model_version=self.bundle.version,
            **fields,
        )

    def _decision_fields(self, decision: Decision) -> dict[str, Any]:
        return {
            "route": decision.route,
            "route_source": decision.source,
            "scores": decision.scores,
            "thresholds_version": self.thresholds.version,
            "model_version": self.bundle.version,
            "request_id": current_request_id(),
        }

    async def route(self, query: str) -> RouteResponse:
        start = time.perf_counter()
        decision = await self._decide(self._clean(query), None)
        timings = {"embed": decision.embed_ms, "classify": decision.classify_ms, "total": _ms(start)}
        self._record(decision, timings_ms=timings)
        return RouteResponse(**self._decision_fields(decision))

    def _needs_passages(self, route: Route) -> bool:
        """``rag`` and ``both`` retrieve; ``ft`` does too when the extractive generator must answer from text."""
        return route != "ft" or self.generator.name == "extractive"

    async def query(self, query: str, top_k: int | None, route: Route | None) -> QueryResponse:
        start = time.perf_counter()
        text = self._clean(query)
        decision = await self._decide(text, route)
        mark = time.perf_counter()
        passages: Sequence[Passage] = []
        if self._needs_passages(decision.route):
            passages = await self.store.search(decision.vector, top_k or self.default_top_k)
        retrieve_ms, mark = _ms(mark), time.perf_counter()
        generation = await self.generator.generate(text, decision.route, passages)
        timings = Timings(decision.embed_ms, decision.classify_ms, retrieve_ms, _ms(mark), _ms(start))
        sources = [Source(p.chunk_id, p.doc_id, p.title, p.section, p.uri, p.score, p.text) for p in passages]
        self._record(
            decision,
            generator=generation.generator,
            llm_model=generation.model,
            source_ids=[s.id for s in sources],
            answer_chars=len(generation.text),
            timings_ms={f: getattr(timings, f) for f in Timings.__struct_fields__},
        )
        return QueryResponse(
            **self._decision_fields(decision),
            answer=generation.text,
            generator=generation.generator,
            model=generation.model,
            sources=sources,
            timings_ms=timings,
        )
