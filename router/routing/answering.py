"""Answering: walk a plan of steps until one answers.

The plan is the decided route, then its configured fallbacks (for example ``ft`` -> ``both`` -> ``rag`` ->
``extractive``). A step is skipped when a backend it needs already failed in this request; every backend call goes
through its :class:`~backends.protection.Guard` (circuit breaker, concurrency cap). Passages are retrieved at most
once per request and shared by the steps that use them. When every step fails the request gets
:class:`~router.lib.errors.NoAnswer` listing each failure.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

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
from backends.lancedb import DocumentStore
from backends.protection import Guard
from backends.types import Passage, SearchMode
from models.routes import Route, Step
from router.lib.errors import NoAnswer
from router.routing.decision import Decision, elapsed_ms
from router.routing.schemas import AnswerStart, Fallback, RetrievalOptions, Source

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


def reason_of(exc: BackendError) -> str:
    return next(reason for kind, reason in REASONS if isinstance(exc, kind))


def uses_passages(step: Step) -> bool:
    """Every step but ``ft`` answers from retrieved passages (extractive too: it quotes them)."""
    return step != "ft"


def llm_backend(model: str) -> str:
    return f"llm:{model}"


@dataclass(frozen=True)
class Attempt:
    """One failed step of the plan."""

    step: Step
    backend: str
    reason: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"step": self.step, "backend": self.backend, "reason": self.reason, "detail": self.detail}


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
    skip: set[str] = field(default_factory=set)
    """Backends that failed in this request: the steps that need them are not tried."""
    retrieve_ms: float = 0.0

    def passages_for(self, step: Step) -> list[Passage]:
        return (self.passages or []) if uses_passages(step) else []

    def fallback(self, step: Step) -> Fallback | None:
        if not self.failed:
            return None
        first = self.failed[0]
        return Fallback(from_=self.decision.route, to=step, reason=first.reason, detail=first.detail)

    def no_answer(self) -> NoAnswer:
        return NoAnswer([a.as_dict() for a in self.failed])


class Answerer:
    """Retrieves and generates for a decided request, falling back along the plan."""

    def __init__(
        self,
        store: DocumentStore,
        llm: ChatGenerator | None,
        guards: Mapping[str, Guard],
        fallbacks: Mapping[Route, Sequence[Step]],
        *,
        search_mode: SearchMode = "vector",
        extractive: ExtractiveGenerator | None = None,
    ) -> None:
        self.store = store
        self.llm = llm
        self.guards = guards
        self.fallbacks = fallbacks
        self.search_mode = search_mode
        self.extractive = extractive or ExtractiveGenerator()

    def plan(self, route: Route) -> list[Step]:
        """The steps tried in order. Without an LLM every route is answered extractively: that is no fallback."""
        if self.llm is None:
            return ["extractive"]
        steps: list[Step] = [route, *self.fallbacks.get(route, ())]
        return list(dict.fromkeys(steps))

    def _backend_of(self, step: Step) -> str | None:
        return None if step == "extractive" or self.llm is None else llm_backend(self.llm.model_for(step))

    async def _retrieve(self, walk: Walk) -> list[Passage]:
        options = walk.options or RetrievalOptions()
        async with self.guards[RETRIEVAL].call():
            return await self.store.search(
                walk.decision.vector, walk.top_k, mode=options.mode or self.search_mode, query_text=walk.text,
                filters=options.filters.as_dict() if options.filters else None,
            )  # fmt: skip

    async def _ensure_passages(self, walk: Walk) -> bool:
        """Retrieves once per request; False when retrieval already failed in this request."""
        if walk.passages is not None:
            return True
        if RETRIEVAL in walk.skip:
            return False
        mark = time.perf_counter()
        try:
            walk.passages = await self._retrieve(walk)
        finally:
            walk.retrieve_ms = elapsed_ms(mark)
        return True

    def _skip_after(self, backend: str, exc: BackendError) -> set[str]:
        """Backends not to try again in this request: the one that failed, or every LLM one when the server
        itself is unreachable (the models share it)."""
        if backend.startswith("llm:") and type(exc) is BackendUnavailable:
            return {g for g in self.guards if g.startswith("llm:")} | {backend}
        return {backend}

    async def walk(self, walk: Walk, attempt: Callable[[Step, list[Passage]], Awaitable[T]]) -> tuple[Step, T]:
        """Runs ``attempt`` on each step of the plan until one succeeds; raises :class:`NoAnswer` if none does."""
        for step in self.plan(walk.decision.route):
            backend = RETRIEVAL
            try:
                if uses_passages(step) and not await self._ensure_passages(walk):
                    continue
                backend = self._backend_of(step) or step
                if backend in walk.skip:
                    continue
                return step, await attempt(step, walk.passages_for(step))
            except BackendError as exc:
                walk.failed.append(Attempt(step, backend, reason_of(exc), str(exc)))
                walk.skip |= self._skip_after(backend, exc)
        raise walk.no_answer()

    async def generate(self, walk: Walk, step: Step, passages: list[Passage]) -> Generation:
        if step == "extractive" or self.llm is None:
            return await self.extractive.generate(walk.text, step, passages)
        async with self.guards[llm_backend(self.llm.model_for(step))].call():
            return await self.llm.generate(walk.text, step, passages, walk.chat)

    async def _pieces(self, walk: Walk, step: Step, passages: list[Passage]) -> AsyncGenerator[str]:
        if step == "extractive" or self.llm is None:
            async for piece in self.extractive.stream(walk.text, step, passages):
                yield piece
            return
        async with self.guards[llm_backend(self.llm.model_for(step))].call():
            async for piece in self.llm.stream(walk.text, step, passages, walk.chat):
                yield piece

    async def open_stream(self, walk: Walk, step: Step, passages: list[Passage]) -> tuple[str, AsyncGenerator[str]]:
        """The first piece of the answer and the rest: a step counts as answering once its first piece arrived."""
        pieces = self._pieces(walk, step, passages)
        try:
            return await anext(pieces), pieces
        except StopAsyncIteration:
            return "", pieces

    def answer_start(self, walk: Walk, step: Step) -> AnswerStart:
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
