"""Opening and closing the heavy things the service holds for its lifetime: bundle, thresholds, embedder,
document store, LLM HTTP client. Used by the app's lifespan and by the CLI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

import anyio
import httpx
import structlog

from backends.generators import ChatGenerator, ExtractiveGenerator, Generator
from backends.lancedb import DocumentStore
from backends.vllm import ChatClient, RetryPolicy, Timeouts
from models.bundle import BundleError, load_bundle, load_thresholds
from models.embedder import Embedder, SentenceTransformerEmbedder
from router.service import RouterService
from router.settings import Settings

log = structlog.get_logger("router.resources")


async def load_embedder(settings: Settings) -> Embedder:
    cfg = settings.embedder
    return await anyio.to_thread.run_sync(
        lambda: SentenceTransformerEmbedder.load(cfg.path, device=cfg.device, batch_size=cfg.batch_size)
    )


async def open_store(settings: Settings, dimension: int) -> DocumentStore:
    cfg = settings.retrieval
    return await DocumentStore.open(
        cfg.uri,
        cfg.table,
        dimension,
        storage_options=cfg.storage_options,
        read_consistency=timedelta(seconds=cfg.read_consistency_seconds),
    )


def build_generator(settings: Settings, stack: AsyncExitStack) -> Generator:
    cfg = settings.llm
    if not cfg.base_url:
        return ExtractiveGenerator()
    limits = httpx.Limits(max_connections=cfg.max_connections, max_keepalive_connections=cfg.max_connections)
    http = httpx.AsyncClient(limits=limits)
    stack.push_async_callback(http.aclose)
    client = ChatClient(
        http,
        cfg.base_url,
        cfg.api_key.get_secret_value() if cfg.api_key else None,
        retry=RetryPolicy(attempts=cfg.retry_attempts),
        timeouts=Timeouts(cfg.connect_timeout, cfg.read_timeout, cfg.total_timeout),
    )
    return ChatGenerator(
        client, base_model=cfg.base_model, ft_model=cfg.ft_model, max_tokens=cfg.max_tokens, temperature=cfg.temperature
    )


@asynccontextmanager
async def open_service(settings: Settings) -> AsyncIterator[RouterService]:
    bundle = load_bundle(settings.model.bundle_dir)
    thresholds = load_thresholds(settings.thresholds_path)
    embedder = await load_embedder(settings)
    expected = bundle.manifest["embedder"]
    if embedder.dimension != expected["dimension"]:
        raise BundleError(
            f"{settings.model.bundle_dir}: bundle was trained on {expected['name']} ({expected['dimension']}-d) "
            f"but the configured embedder {embedder.name} makes {embedder.dimension}-d vectors"
        )
    store = await open_store(settings, embedder.dimension)
    async with AsyncExitStack() as stack:
        generator = build_generator(settings, stack)
        log.info(
            "service_opened",
            model_version=bundle.version,
            thresholds_version=thresholds.version,
            embedder=embedder.name,
            retrieval=f"{settings.retrieval.uri}#{settings.retrieval.table}",
            chunks=await store.count(),
            generator=generator.name,
        )
        yield RouterService(
            embedder=embedder,
            bundle=bundle,
            thresholds=thresholds,
            policy=bundle.policy(thresholds),
            store=store,
            generator=generator,
            limiter=anyio.CapacityLimiter(settings.embedder.threads),
            max_query_chars=settings.server.max_query_chars,
            default_top_k=settings.retrieval.top_k,
        )
