"""The request path: decide (:mod:`router.routing.decision`), answer (:mod:`router.routing.answering`), record
(:mod:`router.routing.record`). Each request ends with one :class:`~router.routing.record.RoutingRecord` handed
to the sinks, whether it was answered or not; the response says who answered and, when that was not the decided
route, why (``fallback``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import anyio

from backends.errors import BackendError
from backends.generators import NO_OPTIONS, ChatOptions, Generation
from backends.lancedb import filter_predicate
from models.routes import Route
from router.lib.errors import InvalidQuery, NoAnswer
from router.lib.logging import current_request_id
from router.routing.answering import Answerer, Walk, reason_of
from router.routing.decision import Decider, Decision, elapsed_ms
from router.routing.record import RoutingRecord, Sink
from router.routing.schemas import (
    AnswerStart,
    QueryResponse,
    RetrievalOptions,
    RouteResponse,
    StreamDone,
    Timings,
    Usage,
)


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


class RouterService:
    """``route``, ``query`` and ``query_stream``: the request path's whole API."""

    def __init__(self, decider: Decider, answerer: Answerer, sinks: Sequence[Sink], *, default_top_k: int) -> None:
        self.decider = decider
        self.answerer = answerer
        self.sinks = list(sinks)
        self.default_top_k = default_top_k

    @property
    def model_version(self) -> str:
        return self.decider.bundle.version

    def _publish(self, record: RoutingRecord) -> None:
        for sink in self.sinks:
            sink(record)

    def _decision_fields(self, decision: Decision) -> dict[str, Any]:
        return {
            "route": decision.route,
            "route_source": decision.source,
            "scores": decision.scores,
            "thresholds_version": decision.tuning.record.version,
            "cost_weight": decision.tuning.policy.cost_weight,
            "knob_source": decision.knob_source,
            "model_version": self.model_version,
        }

    def _route_response(self, decision: Decision, request_id: str) -> RouteResponse:
        return RouteResponse(**self._decision_fields(decision), request_id=request_id)

    async def route(self, query: str, cost_weight: float | None = None) -> RouteResponse:
        start = time.perf_counter()
        decision = await self.decider.decide(self.decider.clean(query), None, cost_weight)
        timings = Timings(decision.embed_ms, decision.classify_ms, 0.0, 0.0, elapsed_ms(start))
        self._publish(RoutingRecord("route", "decided", decision, self.model_version, timings))
        return self._route_response(decision, _request_id())

    def _record_answer(self, walk: Walk, answer: AnswerStart | None, answer_chars: int, timings: Timings) -> None:
        """The routing record of a query, answered (``answer``) or not (None: every step failed)."""
        decision, failures = walk.decision, tuple(walk.failed)
        if answer is None:
            self._publish(RoutingRecord("query", "no_answer", decision, self.model_version, timings, failures=failures))
            return
        record = RoutingRecord(
            "query", "answered", decision, self.model_version, timings,
            answered_by=answer.answered_by, generator=answer.generator, llm_model=answer.model,
            fallback=answer.fallback, failures=failures, source_ids=tuple(s.id for s in answer.sources),
            answer_chars=answer_chars,
        )  # fmt: skip
        self._publish(record)

    async def _begin(self, ask: Ask) -> Walk:
        text = self.decider.clean(ask.query)
        options = ask.retrieval
        if options and options.filters:
            try:
                filter_predicate(options.filters.as_dict())
            except ValueError as exc:  # for example an empty list of values
                raise InvalidQuery(str(exc)) from exc
        decision = await self.decider.decide(text, ask.route, ask.cost_weight)
        return Walk(text, decision, ask.top_k or self.default_top_k, options, ask.chat)

    async def query(self, ask: Ask) -> QueryResponse:
        start = time.perf_counter()
        walk = await self._begin(ask)
        mark = time.perf_counter()
        answerer = self.answerer
        try:
            step, generation = await answerer.walk(walk, lambda s, p: answerer.generate(walk, s, p))
        except NoAnswer:
            self._record_answer(walk, None, 0, _timings(walk, start, mark))
            raise
        answer = answerer.answer_start(walk, step)
        timings = _timings(walk, start, mark)
        self._record_answer(walk, answer, len(generation.text), timings)
        return QueryResponse(
            **self._decision_fields(walk.decision),
            request_id=_request_id(),
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

    async def query_stream(self, ask: Ask) -> AsyncIterator[tuple[str, Any]]:
        """Decides now (so bad input fails as a plain 400), then returns the events: ``decision``, ``answer``,
        ``delta``..., ``done``; or ``error`` (a problem body) when no step can answer or the answer breaks off."""
        start = time.perf_counter()
        walk = await self._begin(ask)
        return self._events(walk, start)

    async def _events(self, walk: Walk, start: float) -> AsyncIterator[tuple[str, Any]]:
        mark = time.perf_counter()
        answerer = self.answerer
        try:
            yield "decision", self._route_response(walk.decision, _request_id())
            step, (first, rest) = await answerer.walk(walk, lambda s, p: answerer.open_stream(walk, s, p))
        except (GeneratorExit, anyio.get_cancelled_exc_class()):  # the client left before an answer started
            timings = _timings(walk, start, mark)
            self._publish(RoutingRecord("query", "client_left", walk.decision, self.model_version, timings))
            raise
        except NoAnswer as exc:
            timings = _timings(walk, start, mark)
            self._record_answer(walk, None, 0, timings)
            yield "error", exc.body()
            yield "done", StreamDone(answer_chars=0, timings_ms=timings)
            return
        answer = answerer.answer_start(walk, step)
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
                timings = _timings(walk, start, mark)
                self._record_answer(walk, answer, chars, timings)
        yield "done", StreamDone(answer_chars=chars, timings_ms=timings)


def _request_id() -> str:
    return current_request_id() or ""


def _timings(walk: Walk, start: float, answer_start: float) -> Timings:
    """``retrieve`` and ``generate`` split the answering time; retrieval is timed inside the walk."""
    decision, generate = walk.decision, elapsed_ms(answer_start) - walk.retrieve_ms
    return Timings(decision.embed_ms, decision.classify_ms, walk.retrieve_ms, round(generate, 2), elapsed_ms(start))


def _usage(generation: Generation) -> Usage | None:
    if generation.prompt_tokens is None or generation.completion_tokens is None:
        return None
    return Usage(generation.prompt_tokens, generation.completion_tokens)
