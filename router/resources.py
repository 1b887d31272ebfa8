"""Opening and closing the heavy things the service holds for its lifetime: bundle, thresholds, embedder,
document store, LLM HTTP client, backend guards. Used by the app's lifespan and by the CLI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from datetime import timedelta

import anyio
import httpx
import structlog

from backends.errors import BackendError
from backends.generators import ChatGenerator, ExtractiveGenerator
from backends.lancedb import DocumentStore
from backends.protection import BreakerConfig, CircuitBreaker, Guard
from backends.vllm import ChatClient, RetryPolicy, Timeouts
from models.bundle import BundleError, load_bundle
from models.embedder import Embedder, load_embedder
from router.routing_log import RoutingLog
from router.service import RETRIEVAL, RouterService, Tuning, llm_backend
from router.settings import Settings
from router.thresholds import ThresholdsStore

log = structlog.get_logger("router.resources")
MODELS_CHECK_TIMEOUT_S = 5.0


class ConfigurationError(Exception):
    """The settings name something the backends do not have; the service refuses to start."""


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


async def check_models(llm: ChatGenerator) -> str:
    """Confirms the server lists the configured base model and fine-tuned adapter; returns a one-line status.

    An unreachable server is a status (the service starts degraded and falls back); a reachable one that lacks a
    configured model is a :class:`ConfigurationError` naming it, because every call to it would fail."""
    try:
        with anyio.fail_after(MODELS_CHECK_TIMEOUT_S):
            served = {m.get("id"): m for m in await llm.client.list_models()}
    except (BackendError, TimeoutError) as exc:
        return f"unreachable: {type(exc).__name__}: {exc}"
    base, ft = llm.model_for("rag"), llm.model_for("ft")
    missing = [name for name in (base, ft) if name not in served]
    if missing:
        raise ConfigurationError(
            f"the LLM server does not serve {', '.join(map(repr, missing))} (llm.base_model / llm.ft_model); "
            f"it serves: {', '.join(sorted(map(str, served))) or 'nothing'}"
        )
    parent = served[ft].get("parent")
    if ft != base and parent not in (None, base):
        log.warning("adapter_parent_mismatch", ft_model=ft, parent=parent, base_model=base)
    return "ok"


@asynccontextmanager
async def open_service(settings: Settings) -> AsyncIterator[RouterService]:
    bundle = load_bundle(settings.model.bundle_dir)
    cfg = settings.thresholds
    thresholds_store = await anyio.to_thread.run_sync(
        lambda: ThresholdsStore.open(cfg.uri, settings.thresholds_path, bundle.version, cfg.storage_options)
    )
    thresholds = await anyio.to_thread.run_sync(thresholds_store.current)
    embedder = await open_embedder(settings)
    expected = bundle.manifest["embedder"]
    if embedder.dimension != expected["dimension"]:
        raise BundleError(
            f"{settings.model.bundle_dir}: bundle was trained on {expected['name']} ({expected['dimension']}-d) "
            f"but the configured embedder {embedder.name} makes {embedder.dimension}-d vectors"
        )
    store = await open_store(settings, embedder.dimension)
    routing_log = await open_routing_log(settings, embedder.dimension)
    async with AsyncExitStack() as stack:
        if routing_log is not None:
            stack.push_async_callback(routing_log.close)  # a clean stop writes every buffered record
        llm = build_llm(settings, stack)
        llm_status = await check_models(llm) if llm else "not configured"
        log.info(
            "service_opened",
            model_version=bundle.version,
            thresholds_version=thresholds.version,
            embedder=embedder.name,
            retrieval=f"{settings.retrieval.uri}#{settings.retrieval.table}",
            chunks=await store.count(),
            llm=llm_status,
        )
        service = RouterService(
            embedder=embedder,
            bundle=bundle,
            tuning=Tuning(thresholds, bundle.policy(thresholds)),
            thresholds_store=thresholds_store,
            store=store,
            llm=llm,
            extractive=ExtractiveGenerator(),
            guards=build_guards(settings, llm),
            fallbacks=settings.llm.fallbacks,
            max_query_chars=settings.server.max_query_chars,
            default_top_k=settings.retrieval.top_k,
            search_mode=settings.retrieval.mode,
            knob_range=settings.thresholds.request_knob_range,
            routing_log=routing_log,
            max_batch=settings.embedder.max_batch,
            max_wait=settings.embedder.max_wait_ms / 1000,
            max_queue=settings.embedder.max_queue,
        )
        stack.push_async_callback(service.decider.close)
        yield service
