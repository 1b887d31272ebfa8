"""structlog, configured by us (not by a framework plugin): JSON lines off a terminal, console on one.

stdlib loggers (uvicorn, litestar, libraries) go through the same processors, so every line has one shape. The
request id is bound in contextvars by the request middleware and appears on every line logged for that request.

A ``query`` field (the query text, as ``route_decided`` carries it) is written as is with ``query_text="full"``;
with ``"hash"`` it is replaced, on every line, by ``query_sha256`` (``sha256:<hex>``, as the routing log stores it
with ``routing_log.query_text=hash``) and ``query_chars``.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.StackInfoRenderer(),
]


def query_digest(text: str) -> str:
    """``sha256:<hex>`` of a query: what log lines and the routing log keep in place of its text."""
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def hash_query(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The processor of ``query_text="hash"``: a line's query text becomes its SHA-256 and length."""
    text = event.pop("query", None)
    if isinstance(text, str):
        event["query_sha256"] = query_digest(text)
        event["query_chars"] = len(text)
    elif text is not None:
        event["query"] = "[redacted]"
    return event


def configure_logging(level: str = "INFO", fmt: str = "auto", query_text: str = "hash") -> None:
    """Idempotent: replaces the root handler and structlog's configuration."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    shared = [*_SHARED, hash_query] if query_text == "hash" else _SHARED
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if use_json else structlog.processors.ExceptionPrettyPrinter(),
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "litestar"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # replaced by our request_completed line
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def current_request_id() -> str:
    return str(structlog.contextvars.get_contextvars().get("request_id", ""))
