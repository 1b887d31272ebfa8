"""The request path: embed -> score -> policy (the decision), then retrieve -> generate (the answer).

Deciding (embedding and scoring) runs in a worker thread, off the event loop, in micro-batches shared by concurrent
requests (:mod:`router.batching`). Each request ends with one ``route_decided`` event carrying the whole routing
record, whether it was answered or not.

Answering walks a plan: the decided route, then its configured fallbacks (for example ``ft`` -> ``both`` -> ``rag``
-> ``extractive``). A step is skipped when a backend it needs already failed in this request; every backend call
goes through its :class:`~backends.protection.Guard` (circuit breaker, concurrency cap). Passages are retrieved at
most once per request and shared by the steps that use them. The response says who answered and, when that was not
the decided route, why (``fallback``). When every step fails the request gets a 503 listing each failure.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import anyio
import numpy as np
import numpy.typing as npt
import structlog

from backends.errors import (
    BackendError,
    BackendSaturated,
    BackendTimeout,
    BackendUnavailable,
    CircuitOpen,
    ModelNotFound,
    RetrievalError,
    UpstreamError,
)
from backends.generators import NO_OPTIONS, ChatGenerator, ChatOptions, ExtractiveGenerator, Generation
from backends.lancedb import DocumentStore, Passage, SearchMode, filter_predicate
from backends.protection import Guard
from models.bundle import Bundle, ThresholdsRecord
from models.embedder import Embedder
from models.policy import MAX_COST_WEIGHT, Policy, decide
from models.routes import ROUTES, Route
from router.batching import MicroBatcher, QueueFull
from router.errors import InvalidQuery, NoAnswer, Overloaded
from router.limits import check_text
from router.logs import current_request_id
from router.routing_log import STAGES, RoutingLog, failures_json, next_seq
from router.schemas import (
    AnswerStart,
    Fallback,
    KnobSource,
    QueryResponse,
    RetrievalOptions,
    RouteResponse,
    RouteSource,
    Scores,
    Source,
    StepName,
    StreamDone,
    Timings,
    Usage,
)
from router.thresholds import ThresholdsStore, ThresholdsStoreError

log = structlog.get_logger("router.decision")
T = TypeVar("T")
RETRIEVAL = "retrieval"
REASONS: tuple[tuple[type[BackendError], str], ...] = (
    (CircuitOpen, "circuit_open"),
    (BackendSaturated, "saturated"),
    (BackendTimeout, "timeout"),
    (BackendUnavailable, "unavailable"),
    (ModelNotFound, "model_not_found"),
    (UpstreamError, "upstream_error"),
    (RetrievalError, "retrieval_error"),
    (BackendError, "backend_error"),
)


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


def reason_of(exc: BackendError) -> str:
    return next(reason for kind, reason in REASONS if isinstance(exc, kind))


def uses_passages(step: StepName) -> bool:
    """Every step but ``ft`` answers from retrieved passages (extractive too: it quotes them)."""
    return step != "ft"


def llm_backend(model: str) -> str:
    return f"llm:{model}"


@dataclass(frozen=True)
class Tuning:
    """The live thresholds record and the policy built from it, swapped as one value so that a request decides and
    reports with the same version even when the thresholds change under it."""

    record: ThresholdsRecord
    policy: Policy


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


@dataclass(frozen=True)
class Ask:
    """One question and what its caller asked for besides: a forced route, its own knob, retrieval and LLM
    options."""

    query: str
    top_k: int | None = None
    route: Route | None = None
    cost_weight: float | None = None
    retrieval: RetrievalOptions | None = None
    chat: ChatOptions = NO_OPTIONS


@dataclass(frozen=True)
class Attempt:
    """One failed step of the plan."""

    step: StepName
    backend: str
    reason: str
    detail: str


@dataclass
class Walk:
    """The state of one request's way through its plan."""

    text: str
    decision: Decision
    top_k: int
    options: RetrievalOptions | None
    chat: ChatOptions = NO_OPTIONS
    passages: list[Passage] | None = None
    failed: list[Attempt] = field(default_factory=list)
    dead: set[str] = field(default_factory=set)
    retrieve_ms: float = 0.0

    def passages_for(self, step: StepName) -> list[Passage]:
        return (self.passages or []) if uses_passages(step) else []

    def fallback(self, step: StepName) -> Fallback | None:
        if not self.failed:
            return None
        first = self.failed[0]
        return Fallback(from_=self.decision.route, to=step, reason=first.reason, detail=first.detail)


@dataclass
class RouterService:
    embedder: Embedder
    bundle: Bundle
    tuning: Tuning
    thresholds_store: ThresholdsStore
    store: DocumentStore
    llm: ChatGenerator | None
    extractive: ExtractiveGenerator
    guards: Mapping[str, Guard]
    fallbacks: Mapping[Route, Sequence[StepName]]
    max_query_chars: int
    default_top_k: int
    search_mode: SearchMode = "vector"
    limiter: anyio.CapacityLimiter = field(default_factory=lambda: anyio.CapacityLimiter(1))
    """Bounds the worker threads of document ingestion, one at a time (queries are decided by ``decider``)."""
    recent: deque[tuple[float, float, float]] = field(default_factory=lambda: deque(maxlen=10_000))
    """Scores of the latest decisions (this process), for what-if evaluation and calibration on traffic."""
    routing_log: RoutingLog | None = None
    observers: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)
    """Called with every routing record (a routing-log row) as it is made: metrics, live views."""
    knob_range: tuple[float, float] | None = (0.0, MAX_COST_WEIGHT)
    """Bounds of a request's own ``cost_weight``; None refuses it."""
    max_batch: int = 8
    max_wait: float = 0.0
    max_queue: int | None = 256
    """Queries waiting to be decided past which a request is answered 503 at once (None: no bound)."""
    _skipped_version: int = 0
    """The newest store version last found set for another bundle (logged once, not applied)."""
    decider: MicroBatcher[str, Scored] = field(init=False)

    def __post_init__(self) -> None:
        self.decider = MicroBatcher(
            self._score, max_batch=self.max_batch, max_wait=self.max_wait, max_queue=self.max_queue
        )

    def _score(self, texts: list[str]) -> list[Scored]:
        """Embeds and scores a batch of queries (in the batcher's worker thread)."""
        start = time.perf_counter()
        vectors = self.embedder.encode(texts)
        embed_ms, start = _ms(start), time.perf_counter()
        probabilities = self.bundle.classifier.predict_proba(vectors, texts)
        classify_ms = _ms(start)
        return [Scored(v, p, embed_ms, classify_ms) for v, p in zip(vectors, probabilities, strict=True)]

    def retune(self, record: ThresholdsRecord) -> Tuning:
        """Makes ``record`` the live thresholds for every request decided from now on, unless a newer version is
        already live: two writes racing can finish out of order, and the newer version must win. Returns the
        tuning of ``record`` either way."""
        tuning = Tuning(record, self.bundle.policy(record))
        if record.version < self.tuning.record.version:
            log.info("thresholds_superseded", version=record.version, live=self.tuning.record.version)
            return tuning
        if record.version != self.tuning.record.version:
            log.info("thresholds_applied", version=record.version, updated_by=record.updated_by)
        self.tuning = tuning
        return tuning

    def refresh_thresholds(self) -> bool:
        """Picks up a newer version from the store (written by any replica); returns whether one was applied.
        An unreadable store keeps the last good version, and a version set for another bundle (a rolling upgrade
        in progress) is not applied."""
        try:
            newest = self.thresholds_store.version()
            if newest <= self.tuning.record.version or newest == self._skipped_version:
                return False
            entry = self.thresholds_store.latest()
        except ThresholdsStoreError as exc:
            log.warning("thresholds_refresh_failed", error=str(exc))
            return False
        if entry.model_version != self.bundle.version:
            log.warning(
                "thresholds_for_other_model",
                version=entry.record.version,
                model_version=entry.model_version,
                ours=self.bundle.version,
            )
            self._skipped_version = entry.record.version
            return False
        self.retune(entry.record)
        return True

    def _clean(self, query: str) -> str:
        check_text(query, "query")
        text = query.strip()
        if not text:
            raise InvalidQuery("query is empty or whitespace")
        if len(text) > self.max_query_chars:
            raise InvalidQuery(f"query is {len(text)} characters; the limit is {self.max_query_chars}")
        return text

    def _tuning_for(self, cost_weight: float | None) -> tuple[Tuning, KnobSource]:
        """The live tuning, or a copy with the request's own knob when it is within ``knob_range``."""
        tuning = self.tuning
        if cost_weight is None:
            return tuning, "live"
        if self.knob_range is None:
            raise InvalidQuery("this service does not take a per-request cost_weight (thresholds.request_knob_range)")
        low, high = self.knob_range
        if not low <= cost_weight <= high:
            raise InvalidQuery(f"cost_weight {cost_weight:g} is outside the allowed range [{low:g}, {high:g}]")
        return replace(tuning, policy=replace(tuning.policy, cost_weight=cost_weight)), "request"

    async def _decide(self, query: str, forced: Route | None, cost_weight: float | None) -> Decision:
        tuning, knob_source = self._tuning_for(cost_weight)
        try:
            batched = await self.decider.submit(query)
        except QueueFull as exc:
            log.warning("request_shed", reason="decider_queue_full", detail=str(exc))
            raise Overloaded(f"the service is at capacity ({exc}; embedder.max_queue); retry in a moment") from exc
        scored = batched.value
        scores: dict[str, float] = {r: round(float(p), 4) for r, p in zip(ROUTES, scored.probabilities, strict=True)}
        route = forced or decide(scores, tuning.policy)
        source: RouteSource = "request" if forced else "policy"
        self.recent.append((scores["ft"], scores["rag"], scores["both"]))
        embed_ms = round(batched.wait_ms + scored.embed_ms, 2)
        return Decision(
            route,
            source,
            Scores(**scores),
            scored.vector,
            embed_ms,
            scored.classify_ms,
            batched.batch_size,
            tuning,
            knob_source,
            query,
        )

    def _record(self, decision: Decision, **fields: Any) -> None:
        """The routing record: one log line, and one row in the durable routing log when there is one."""
        log.info(
            "route_decided",
            query=decision.text,  # the text, or its hash and length: log.query_text (router.logs)
            route=decision.route,
            route_source=decision.source,
            scores={r: getattr(decision.scores, r) for r in ROUTES},
            thresholds=decision.tuning.record.thresholds.as_dict(),
            cost_weight=decision.tuning.policy.cost_weight,
            knob_source=decision.knob_source,
            thresholds_version=decision.tuning.record.version,
            model_version=self.bundle.version,
            batch_size=decision.batch_size,
            **fields,
        )
        row = self._row(decision, fields)
        for observe in self.observers:
            observe(row)
        if self.routing_log is not None:
            self.routing_log.append(row)

    def _row(self, decision: Decision, fields: Mapping[str, Any]) -> dict[str, Any]:
        """The routing record as a row of the routing log's table (``router.routing_log.schema``)."""
        fallback = fields.get("fallback")
        timings = fields.get("timings_ms", {})
        return {
            "seq": next_seq(),
            "ts": datetime.now(UTC),
            "request_id": current_request_id() or "",
            "endpoint": fields.get("endpoint", "query"),
            "query": self.routing_log.stored_query(decision.text) if self.routing_log else decision.text,
            "route": decision.route,
            "route_source": decision.source,
            **{f"score_{r}": getattr(decision.scores, r) for r in ROUTES},
            "cost_weight": decision.tuning.policy.cost_weight,
            "knob_source": decision.knob_source,
            "thresholds_version": decision.tuning.record.version,
            "model_version": self.bundle.version,
            "status": fields.get("status", "answered"),
            "answered_by": fields.get("answered_by"),
            "llm_model": fields.get("llm_model"),
            "fallback": fallback is not None,
            "fallback_to": fallback["to"] if fallback else None,
            "fallback_reason": fallback["reason"] if fallback else None,
            "failures": failures_json(fields.get("failures", [])),
            "source_ids": list(fields.get("source_ids", [])),
            "answer_chars": int(fields.get("answer_chars", 0)),
            **{f"ms_{stage}": float(timings.get(stage, 0.0)) for stage in STAGES},
            "vector": decision.vector.astype(np.float32),
        }

    def _decision_fields(self, decision: Decision) -> dict[str, Any]:
        return {
            "route": decision.route,
            "route_source": decision.source,
            "scores": decision.scores,
            "thresholds_version": decision.tuning.record.version,
            "cost_weight": decision.tuning.policy.cost_weight,
            "knob_source": decision.knob_source,
            "model_version": self.bundle.version,
            "request_id": current_request_id(),
        }

    async def route(self, query: str, cost_weight: float | None = None) -> RouteResponse:
        start = time.perf_counter()
        decision = await self._decide(self._clean(query), None, cost_weight)
        timings = {"embed": decision.embed_ms, "classify": decision.classify_ms, "total": _ms(start)}
        self._record(decision, endpoint="route", status="decided", timings_ms=timings)
        return RouteResponse(**self._decision_fields(decision))

    # -- answering ---------------------------------------------------------------------------------------------

    def plan(self, route: Route) -> list[StepName]:
        """The steps tried in order. Without an LLM every route is answered extractively: that is no fallback."""
        if self.llm is None:
            return ["extractive"]
        steps: list[StepName] = [route, *self.fallbacks.get(route, ())]
        return list(dict.fromkeys(steps))

    def _backend_of(self, step: StepName) -> str | None:
        return None if step == "extractive" or self.llm is None else llm_backend(self.llm.model_for(step))

    async def _retrieve(self, walk: Walk) -> list[Passage]:
        options = walk.options or RetrievalOptions()
        async with self.guards[RETRIEVAL].call():
            return await self.store.search(
                walk.decision.vector, walk.top_k, mode=options.mode or self.search_mode, query_text=walk.text,
                filters=options.filters.as_dict() if options.filters else None,
            )  # fmt: skip

    def _dead_after(self, backend: str, exc: BackendError) -> set[str]:
        """Backends not to try again in this request: the one that failed, or every LLM one when the server
        itself is unreachable (the models share it)."""
        if backend.startswith("llm:") and type(exc) is BackendUnavailable:
            return {g for g in self.guards if g.startswith("llm:")} | {backend}
        return {backend}

    async def _walk(self, walk: Walk, attempt: Callable[[StepName, list[Passage]], Awaitable[T]]) -> tuple[StepName, T]:
        """Runs ``attempt`` on each step of the plan until one succeeds; raises :class:`NoAnswer` if none does."""
        for step in self.plan(walk.decision.route):
            backend = RETRIEVAL
            try:
                if uses_passages(step) and walk.passages is None:
                    if RETRIEVAL in walk.dead:
                        continue
                    mark = time.perf_counter()
                    try:
                        walk.passages = await self._retrieve(walk)
                    finally:
                        walk.retrieve_ms = _ms(mark)
                backend = self._backend_of(step) or step
                if backend in walk.dead:
                    continue
                return step, await attempt(step, walk.passages_for(step))
            except BackendError as exc:
                walk.failed.append(Attempt(step, backend, reason_of(exc), str(exc)))
                walk.dead |= self._dead_after(backend, exc)
        raise NoAnswer([a.__dict__ for a in walk.failed])

    async def _generate(self, walk: Walk, step: StepName, passages: list[Passage]) -> Generation:
        if step == "extractive" or self.llm is None:
            return await self.extractive.generate(walk.text, step, passages)
        async with self.guards[llm_backend(self.llm.model_for(step))].call():
            return await self.llm.generate(walk.text, step, passages, walk.chat)

    async def _pieces(self, walk: Walk, step: StepName, passages: list[Passage]) -> AsyncGenerator[str]:
        if step == "extractive" or self.llm is None:
            async for piece in self.extractive.stream(walk.text, step, passages):
                yield piece
            return
        async with self.guards[llm_backend(self.llm.model_for(step))].call():
            async for piece in self.llm.stream(walk.text, step, passages, walk.chat):
                yield piece

    async def _open_stream(
        self, walk: Walk, step: StepName, passages: list[Passage]
    ) -> tuple[str, AsyncGenerator[str]]:
        """The first piece of the answer and the rest: a step counts as answering once its first piece arrived."""
        pieces = self._pieces(walk, step, passages)
        try:
            return await anext(pieces), pieces
        except StopAsyncIteration:
            return "", pieces

    def _answer_start(self, walk: Walk, step: StepName) -> AnswerStart:
        llm = None if step == "extractive" else self.llm
        return AnswerStart(
            answered_by=step,
            generator="llm" if llm else "extractive",
            model=llm.model_for(step) if llm else None,
            fallback=walk.fallback(step),
            sources=[
                Source(p.chunk_id, p.doc_id, p.title, p.section, p.uri, p.score, p.text)
                for p in walk.passages_for(step)
            ],
        )

    def _record_answer(self, walk: Walk, answer: AnswerStart | None, answer_chars: int, timings: Timings) -> None:
        """The routing record of a query, answered (``answer``) or not (None: every step failed)."""
        fallback = answer.fallback if answer else None
        self._record(
            walk.decision,
            status="answered" if answer else "no_answer",
            answered_by=answer.answered_by if answer else None,
            fallback={"from": fallback.from_, "to": fallback.to, "reason": fallback.reason} if fallback else None,
            failures=[a.__dict__ for a in walk.failed],
            generator=answer.generator if answer else None,
            llm_model=answer.model if answer else None,
            source_ids=[s.id for s in answer.sources] if answer else [],
            answer_chars=answer_chars,
            timings_ms={f: getattr(timings, f) for f in Timings.__struct_fields__},
        )

    async def _begin(self, ask: Ask) -> Walk:
        text = self._clean(ask.query)
        options = ask.retrieval
        if options and options.filters:
            try:
                filter_predicate(options.filters.as_dict())
            except ValueError as exc:  # for example an empty list of values
                raise InvalidQuery(str(exc)) from exc
        decision = await self._decide(text, ask.route, ask.cost_weight)
        return Walk(text, decision, ask.top_k or self.default_top_k, options, ask.chat)

    async def query(self, ask: Ask) -> QueryResponse:
        start = time.perf_counter()
        walk = await self._begin(ask)
        mark = time.perf_counter()
        try:
            step, generation = await self._walk(walk, lambda s, p: self._generate(walk, s, p))
        except NoAnswer:
            self._record_answer(walk, None, 0, self._timings(walk, start, mark))
            raise
        answer = self._answer_start(walk, step)
        timings = self._timings(walk, start, mark)
        self._record_answer(walk, answer, len(generation.text), timings)
        return QueryResponse(
            **self._decision_fields(walk.decision),
            answer=generation.text,
            answered_by=answer.answered_by,
            generator=answer.generator,
            model=answer.model,
            fallback=answer.fallback,
            sources=answer.sources,
            timings_ms=timings,
            finish_reason=generation.finish_reason,
            usage=_usage(generation),
        )

    def _timings(self, walk: Walk, start: float, answer_start: float) -> Timings:
        """``retrieve`` and ``generate`` split the answering time; retrieval is timed inside the walk."""
        decision, generate = walk.decision, _ms(answer_start) - walk.retrieve_ms
        return Timings(decision.embed_ms, decision.classify_ms, walk.retrieve_ms, round(generate, 2), _ms(start))

    async def query_stream(self, ask: Ask) -> AsyncIterator[tuple[str, Any]]:
        """Decides now (so bad input fails as a plain 400), then returns the events: ``decision``, ``answer``,
        ``delta``..., ``done``; or ``error`` (a problem body) when no step can answer or the answer breaks off."""
        start = time.perf_counter()
        walk = await self._begin(ask)
        return self._events(walk, start)

    async def _events(self, walk: Walk, start: float) -> AsyncIterator[tuple[str, Any]]:
        yield "decision", RouteResponse(**self._decision_fields(walk.decision))
        mark = time.perf_counter()
        try:
            step, (first, rest) = await self._walk(walk, lambda s, p: self._open_stream(walk, s, p))
        except NoAnswer as exc:
            timings = self._timings(walk, start, mark)
            self._record_answer(walk, None, 0, timings)
            yield "error", exc.body()
            yield "done", StreamDone(answer_chars=0, timings_ms=timings)
            return
        answer = self._answer_start(walk, step)
        chars = 0
        async with aclosing(rest):  # releases the backend's slot however the stream ends, a disconnect included
            try:
                yield "answer", answer
                if first:
                    chars += len(first)
                    yield "delta", {"text": first}
                async for piece in rest:
                    chars += len(piece)
                    yield "delta", {"text": piece}
            except BackendError as exc:
                detail = f"the answer broke off: {exc.backend} backend failed: {exc}"
                yield "error", {"status": 502, "reason": reason_of(exc), "detail": detail}
            finally:
                timings = self._timings(walk, start, mark)
                self._record_answer(walk, answer, chars, timings)
        yield "done", StreamDone(answer_chars=chars, timings_ms=timings)


def _usage(generation: Generation) -> Usage | None:
    if generation.prompt_tokens is None or generation.completion_tokens is None:
        return None
    return Usage(generation.prompt_tokens, generation.completion_tokens)
