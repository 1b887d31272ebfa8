"""Whether this replica can answer (``GET /ready``), and the LLM server's model check made at start and on each
readiness probe. No litestar here: the controller turns :class:`Readiness` into a response."""

from __future__ import annotations

from collections.abc import Mapping

import anyio
import structlog

from backends.errors import BackendError
from backends.generators import ChatGenerator
from backends.lancedb import DocumentStore
from backends.protection import Guard
from router.lib.errors import ConfigurationError
from router.routing.schemas import Readiness

log = structlog.get_logger("router.routing.readiness")
MODELS_CHECK_TIMEOUT_S = 5.0
READY_TIMEOUT_S = 2.0


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
        log.warning("adapter_parent_mismatched", ft_model=ft, parent=parent, base_model=base)
    return "ok"


async def readiness(
    model_version: str, thresholds_version: int, store: DocumentStore, llm: ChatGenerator | None,
    guards: Mapping[str, Guard],
) -> Readiness:  # fmt: skip
    """``ready``; ``degraded`` when the LLM server is unreachable or a circuit is open (answers fall back);
    ``not_ready`` when the document store fails (nothing could answer)."""
    checks = {"model": model_version, "thresholds": str(thresholds_version)}
    try:
        with anyio.fail_after(READY_TIMEOUT_S):
            checks["retrieval"] = f"{await store.count()} chunks"
    except Exception as exc:
        checks["retrieval"] = f"failed: {type(exc).__name__}: {exc}"
        return Readiness("not_ready", checks)
    checks["llm"] = await _llm_status(llm)
    open_circuits = [name for name, guard in guards.items() if guard.breaker.state != "closed"]
    checks["circuits"] = ", ".join(f"{n} {guards[n].breaker.state}" for n in open_circuits) or "closed"
    degraded = checks["llm"] not in ("ok", "not configured") or bool(open_circuits)
    return Readiness("degraded" if degraded else "ready", checks)


async def _llm_status(llm: ChatGenerator | None) -> str:
    if llm is None:
        return "not configured"
    try:
        with anyio.fail_after(READY_TIMEOUT_S):
            return await check_models(llm)
    except Exception as exc:  # a model that disappeared since startup, or a timeout
        return f"failed: {type(exc).__name__}: {exc}"
