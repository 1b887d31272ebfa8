"""Opening and closing the heavy things the service holds for its lifetime (bundle, thresholds, embedder, document
store, routing log, LLM HTTP client, backend guards) and building the services on them: the one wiring place. Used
by the app's lifespan and by the CLI."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta

import anyio
import httpx
import structlog

from backends.generators import ChatGenerator
from backends.lancedb import DocumentStore
from backends.protection import BreakerConfig, CircuitBreaker, Guard
from backends.vllm import ChatClient, RetryPolicy, Timeouts
from models.bundle import Bundle, check_embedder, load_bundle
from models.embedder import Embedder, load_embedder
from router.lib.settings import Settings
from router.routing.answering import RETRIEVAL, Answerer, llm_backend
from router.routing.decision import Decider
from router.routing.readiness import check_models
from router.routing.record import Sink, log_record
from router.routing.service import RouterService
from router.routing_log.store import RoutingLog
from router.thresholds.live import LiveTuning
from router.thresholds.outcomes import OutcomesScorer
from router.thresholds.store import ThresholdsStore
from router.thresholds.traffic import RecentScores

log = structlog.get_logger("router.server.resources")


def embedder_from(settings: Settings) -> Embedder:
    cfg = settings.embedder
    return load_embedder(
        cfg.path,
        backend=cfg.backend,
        onnx_dir=cfg.onnx_dir,
        precision=cfg.precision,
        threads=cfg.threads,
        batch_size=cfg.batch_size,
        device=cfg.device,
    )


async def open_embedder(settings: Settings) -> Embedder:
    return await anyio.to_thread.run_sync(embedder_from, settings)


async def open_store(settings: Settings, dimension: int) -> DocumentStore:
    cfg = settings.retrieval
    return await DocumentStore.open(
        cfg.uri,
        cfg.table,
        dimension,
        storage_options=cfg.storage_options,
        read_consistency=timedelta(seconds=cfg.read_consistency_seconds),
        index_threshold=cfg.index_threshold,
    )


async def open_routing_log(settings: Settings, dimension: int) -> RoutingLog | None:
    cfg = settings.routing_log
    if not cfg.enabled:
        return None
    return await RoutingLog.open(
        cfg.uri or settings.retrieval.uri,
        cfg.table,
        dimension,
        storage_options=settings.retrieval.storage_options if cfg.storage_options is None else cfg.storage_options,
        read_consistency=timedelta(seconds=settings.retrieval.read_consistency_seconds),
        query_text=cfg.query_text,
        flush_seconds=cfg.flush_seconds,
        max_batch=cfg.max_batch,
        max_buffer=cfg.max_buffer,
    )


def build_llm(settings: Settings, stack: AsyncExitStack) -> ChatGenerator | None:
    """The LLM generator, or None when no server is configured (then every answer is extractive)."""
    cfg = settings.llm
    if not cfg.base_url:
        return None
    limits = httpx.Limits(max_connections=cfg.max_connections, max_keepalive_connections=cfg.max_connections)
    http = httpx.AsyncClient(limits=limits)
    stack.push_async_callback(http.aclose)
    timeouts = Timeouts(cfg.connect_timeout, cfg.read_timeout, cfg.total_timeout)
    client = ChatClient(
        http,
        cfg.base_url,
        cfg.api_key.get_secret_value() if cfg.api_key else None,
        retry=RetryPolicy(attempts=cfg.retry_attempts),
        timeouts=timeouts,
    )
    per_route: dict[str, Timeouts] = {
        route: replace(timeouts, **override.model_dump(exclude_none=True))
        for route, override in cfg.route_timeouts.items()
    }
    return ChatGenerator(
        client,
        base_model=cfg.base_model,
        ft_model=cfg.ft_model,
        max_tokens=cfg.max_tokens,
        temperature=cfg.temperature,
        timeouts=per_route,
    )


def build_guards(settings: Settings, llm: ChatGenerator | None) -> dict[str, Guard]:
    b = settings.breaker
    config = BreakerConfig(b.failure_ratio, b.window_seconds, b.min_calls, b.cooldown_seconds)
    caps = {RETRIEVAL: (settings.retrieval.max_concurrency, settings.retrieval.queue_timeout)}
    if llm is not None:
        for model in {llm.model_for("rag"), llm.model_for("ft")}:
            caps[llm_backend(model)] = (settings.llm.max_concurrency, settings.llm.queue_timeout)
    return {
        name: Guard(name, max_concurrency=cap, queue_timeout=wait, breaker=CircuitBreaker(name, config))
        for name, (cap, wait) in caps.items()
    }


@dataclass
class Resources:
    """The heavy things opened once for the service's lifetime, and the services built on them; handlers get what
    they need from here by injection (``router.server.app``), never through one another."""

    settings: Settings
    bundle: Bundle
    embedder: Embedder
    store: DocumentStore
    live: LiveTuning
    traffic: RecentScores
    routing_log: RoutingLog | None
    llm: ChatGenerator | None
    guards: dict[str, Guard]
    service: RouterService
    outcomes: OutcomesScorer
    ingestion: anyio.CapacityLimiter = field(default_factory=lambda: anyio.CapacityLimiter(1))
    """Bounds the worker threads of document ingestion, one at a time (queries are decided by the batcher)."""


async def open_live_tuning(settings: Settings, bundle: Bundle) -> LiveTuning:
    cfg = settings.thresholds
    store = await anyio.to_thread.run_sync(
        lambda: ThresholdsStore.open(cfg.uri, settings.thresholds_path, bundle.version, cfg.storage_options)
    )
    return LiveTuning(bundle, store, await anyio.to_thread.run_sync(store.current))


def build_decider(settings: Settings, embedder: Embedder, bundle: Bundle, live: LiveTuning) -> Decider:
    cfg = settings.embedder
    return Decider(
        embedder, bundle, live,
        max_query_chars=settings.server.max_query_chars, knob_range=settings.thresholds.request_knob_range,
        max_batch=cfg.max_batch, max_wait=cfg.max_wait_ms / 1000, max_queue=cfg.max_queue,
    )  # fmt: skip


def build_answerer(
    settings: Settings, store: DocumentStore, llm: ChatGenerator | None, guards: dict[str, Guard]
) -> Answerer:
    return Answerer(store, llm, guards, settings.llm.fallbacks, search_mode=settings.retrieval.mode)


@asynccontextmanager
async def open_resources(settings: Settings, sinks: Sequence[Sink] = ()) -> AsyncIterator[Resources]:
    """Opens everything in order (bundle, thresholds, embedder, document store, routing log, LLM client) and closes
    it in reverse. Every routing record goes to the log line, then ``sinks``, then the routing log and the
    recent-traffic buffer."""
    bundle = load_bundle(settings.model.bundle_dir)
    live = await open_live_tuning(settings, bundle)
    embedder = await open_embedder(settings)
    check_embedder(bundle, embedder, settings.model.bundle_dir)
    store = await open_store(settings, embedder.dimension)
    routing_log = await open_routing_log(settings, embedder.dimension)
    traffic = RecentScores()
    async with AsyncExitStack() as stack:
        if routing_log is not None:
            stack.push_async_callback(routing_log.close)  # a clean stop writes every buffered record
        llm = build_llm(settings, stack)
        llm_status = await check_models(llm) if llm else "not configured"
        log.info(
            "service_opened",
            model_version=bundle.version,
            thresholds_version=live.current.record.version,
            embedder=embedder.name,
            retrieval=f"{settings.retrieval.uri}#{settings.retrieval.table}",
            chunks=await store.count(),
            llm=llm_status,
        )
        every: list[Sink] = [log_record, *sinks]
        if routing_log is not None:
            every.append(routing_log.write)
        every.append(lambda record: traffic.add(*record.decision.scores.as_tuple()))
        guards = build_guards(settings, llm)
        decider = build_decider(settings, embedder, bundle, live)
        stack.push_async_callback(decider.close)
        answerer = build_answerer(settings, store, llm, guards)
        service = RouterService(decider, answerer, every, default_top_k=settings.retrieval.top_k)
        cfg = settings.thresholds
        outcomes = OutcomesScorer(cfg.outcomes_file, cfg.outcomes_split, embedder, bundle)
        yield Resources(settings, bundle, embedder, store, live, traffic, routing_log, llm, guards, service, outcomes)
