"""Server-sent events: the streamed answers of ``/v1/query`` and ``/v1/chat/completions``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar.response import Stream

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class EventStream(Stream):
    """A ``text/event-stream`` response from a handler that otherwise answers JSON: litestar gives the handler's
    media type precedence over the response's own, so it is forced here."""

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> Any:
        return super().to_asgi_response(*args, **(kwargs | {"media_type": "text/event-stream"}))


async def sse(events: AsyncIterator[tuple[str, Any]]) -> AsyncIterator[bytes]:
    """Named server-sent events, one JSON object per ``data:`` line."""
    async for name, payload in events:
        yield b"event: " + name.encode() + b"\ndata: " + msgspec.json.encode(payload) + b"\n\n"
