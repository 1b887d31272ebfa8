"""The HTTP server's own defences, below the app: a cap on open connections, deadlines for a request's headers and
body, limits on header size and count, and a graceful-shutdown deadline. uvicorn has none of the first four (its
``limit_concurrency`` answers 503 only once a request's headers have arrived, by which time the connection already
holds a file descriptor; its keep-alive timer starts only after a first response), so :class:`GuardedHttpTools`
adds them to its httptools protocol:

    connections over ``server.max_connections``   the oldest connection with no request in flight is closed to
                                                  make room (an idle or half-sent one); when every connection has a
                                                  request in flight, the new one gets 503 and is closed
    headers not complete within ``server.header_timeout_seconds`` (from the connection or the previous response)
                                                  408 and closed
    body not complete within ``server.body_timeout_seconds`` after its headers
                                                  closed; the app sees the client leave
    request line and headers over ``server.max_header_bytes`` or ``server.max_headers`` fields
                                                  431 and closed

So a flood of idle or slow connections cannot exhaust file descriptors or hold the process at shutdown, and
``/health`` keeps answering through one.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import structlog
import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from router.lib.settings import ServerSettings

log = structlog.get_logger("router.server.http")


REPORT_EVERY_S = 1.0
_FLOOD_COUNTS: dict[str, float] = {}
"""Evictions and refusals since the last warning, and when it was logged (this process)."""


class HeadersTooLarge(Exception):
    """Raised inside the parser to stop it; answered 431."""


class GuardedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of ``server`` (set on a subclass by :func:`protocol_for`)."""

    server_settings: ServerSettings = ServerSettings()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        """Raw bytes received while the head is incomplete: bounds a head that never ends."""
        self._parsed = 0
        """Bytes of the request line and header fields parsed so far."""
        self._head_fields = 0
        self._in_head = True
        self._refusal: tuple[int, str] | None = None
        self.opened_at = 0.0

    # -- connections ---------------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.opened_at = self.loop.time()
        self._arm(self.server_settings.header_timeout_seconds, self._headers_late)
        if len(self.connections) > self.server_settings.max_connections:
            self._make_room()

    def _busy(self) -> bool:
        """A request of this connection is being answered (its headers arrived, its response is not complete)."""
        return self.cycle is not None and not self.cycle.response_complete and not self._in_head

    def _make_room(self) -> None:
        idle = [c for c in self.connections if isinstance(c, GuardedHttpTools) and c is not self and not c._busy()]
        if idle:
            min(idle, key=lambda c: c.opened_at).transport.close()
            self._report("connection_evicted")
            return
        self._report("connection_refused")
        self._refuse(503, "too many connections; retry in a moment")

    def _report(self, event: str) -> None:
        """One warning a second at most, with how many there were: a flood must not flood the log too."""
        counts = _FLOOD_COUNTS
        counts[event] = counts.get(event, 0) + 1
        now = self.loop.time()
        if now - counts.get("_logged_at", -REPORT_EVERY_S) >= REPORT_EVERY_S:
            log.warning(event, reason="server.max_connections", open=len(self.connections), since_last=counts[event])
            counts[event], counts["_logged_at"] = 0, now

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # -- deadlines -----------------------------------------------------------------------------------------------

    def _arm(self, seconds: float, callback: Any) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_late(self) -> None:
        if not self.transport.is_closing():
            self._refuse(408, f"request headers not received within {self.server_settings.header_timeout_seconds:g} s")

    def _body_late(self) -> None:
        if not self.transport.is_closing():
            log.warning("request_body_timed_out", seconds=self.server_settings.body_timeout_seconds)
            self.transport.close()

    def _refuse(self, status: int, message: str) -> None:
        body = message.encode()
        head = b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\ncontent-length: %d\r\n\r\n"
        self.transport.write(STATUS_LINE[status] + head % len(body) + body)
        self.transport.close()

    # -- parsing -------------------------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        in_head = self._in_head
        super().data_received(data)
        if in_head and self._in_head and not self.transport.is_closing():
            # still no end of the head: bytes of an unfinished line or field count too, so a head that never ends
            # is refused before the parser buffers it all (a body arriving with its head is not counted)
            self._head_bytes += len(data)
            if self._head_bytes > self.server_settings.max_header_bytes * 2:
                self._refuse(431, self._too_large())

    def _too_large(self) -> str:
        s = self.server_settings
        return f"request headers over {s.max_header_bytes} bytes or {s.max_headers} fields (server.max_header_bytes)"

    def send_400_response(self, msg: str) -> None:
        if self._refusal is not None:
            self._refuse(*self._refusal)
            return
        super().send_400_response(msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_fields, self._parsed = True, 0, 0
        if self._deadline is None:  # a keep-alive connection's next request
            self._arm(self.server_settings.header_timeout_seconds, self._headers_late)

    def on_url(self, url: bytes) -> None:
        self._count(len(url), fields=0)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value), fields=1)
        super().on_header(name, value)

    def _count(self, size: int, fields: int) -> None:
        self._head_fields += fields
        self._parsed += size
        s = self.server_settings
        if self._head_fields > s.max_headers or self._parsed > s.max_header_bytes:
            self._refusal = (431, self._too_large())
            raise HeadersTooLarge

    def on_headers_complete(self) -> None:
        self._in_head, self._parsed = False, 0
        self._arm(self.server_settings.body_timeout_seconds, self._body_late)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self._disarm()
        super().on_response_complete()  # arms uvicorn's keep-alive timer (server.keep_alive_seconds)


def protocol_for(server: ServerSettings) -> type[GuardedHttpTools]:
    """The protocol class carrying ``server``'s limits."""
    return type("GuardedHttpToolsFor", (GuardedHttpTools,), {"server_settings": server})


def server_config(app: Any, server: ServerSettings, *, host: str, port: int) -> uvicorn.Config:
    """uvicorn's configuration for ``app``: the guarded protocol, keep-alive and graceful-shutdown deadlines."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol_for(server),
        timeout_keep_alive=server.keep_alive_seconds,
        proxy_headers=bool(server.trusted_proxies),  # uvicorn believes 127.0.0.1 by default: anything on the host
        forwarded_allow_ips=server.trusted_proxies or None,
        timeout_graceful_shutdown=math.ceil(server.shutdown_timeout_seconds),
        log_config=None,
        access_log=False,
    )
