"""Limits on what a request may carry, checked where the body is read and decoded (``LimitedRequest``, the app's
request class) and Each refusal is an HTTP error with a detail naming the limit;
``router.lib.problems`` turns it into a problem-details body.

    body size          over ``server.max_body_bytes`` (the documents API: ``server.max_document_body_bytes``),
                       announced by Content-Length or counted while streaming (chunked): 413
    content type       a JSON endpoint sent a body that is not ``application/json`` (or ``*/*+json``, charset utf-8
                       if one is named): 415. No Content-Type at all is read as JSON
    malformed JSON     400 naming the position; invalid UTF-8: 400 naming the byte
    JSON depth         objects and arrays nested deeper than ``MAX_JSON_DEPTH``: 400 (msgspec stops runaway
                       nesting itself, so 10,000 levels are refused at once, never a crash)

Query text is checked below the HTTP layer (``router.lib.text``).
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from typing import Any

from litestar import Request
from litestar.connection.base import empty_receive, empty_send
from litestar.exceptions import ClientException, HTTPException, SerializationException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge

from router.lib.errors import ClientLeft

MAX_JSON_DEPTH = 32
"""Deepest nesting of objects and arrays a body may have; the deepest wire type needs 5."""
LIMIT_SETTING = "body_limit_setting"
"""Key in a route layer's ``opt`` naming the setting its body size limit comes from."""
_JSON_TYPE = re.compile(r"^application/([a-z0-9.+-]+\+)?json$")


class LimitedRequest(Request[Any, Any, Any]):
    """litestar's request, with every limit of a JSON body enforced and explained, and a client that leaves while
    sending its body told apart from a server error (:class:`~router.lib.errors.ClientLeft`)."""

    def __init__(self, scope: Any, receive: Any = empty_receive, send: Any = empty_send) -> None:
        super().__init__(scope, receive, send)
        self.client_left = False
        received = self.receive

        async def watched() -> Any:
            message = await received()
            if message["type"] == "http.disconnect":
                self.client_left = True
            return message

        self.receive = watched

    async def stream(self) -> AsyncGenerator[bytes, None]:
        try:
            async for chunk in super().stream():
                yield chunk
        except RequestEntityTooLarge:
            limit = self.route_handler.resolve_request_max_body_size()
            setting = self.route_handler.opt.get(LIMIT_SETTING, "server.max_body_bytes")
            raise RequestEntityTooLarge(
                f"the request body is larger than {limit} bytes, this endpoint's limit ({setting})"
            ) from None
        except HTTPException:  # litestar reports a client gone mid-body as a server error (500)
            if self.client_left:
                raise ClientLeft("the client closed the connection before its request body arrived") from None
            raise

    async def json(self) -> Any:
        check_media_type(self.headers.get("content-type"))
        try:
            value = await super().json()
        except RecursionError:
            raise ClientException(f"the JSON body is nested more than {MAX_JSON_DEPTH} levels deep") from None
        except (UnicodeDecodeError, SerializationException) as exc:
            # Checked here, on the raw bytes, so the reason is ours whatever the JSON library reports (msgspec 0.23
            # reports invalid UTF-8 as malformed JSON; older releases raised UnicodeDecodeError).
            raise ClientException(invalid_body_reason(await self.body(), exc)) from None
        if too_deep(value, MAX_JSON_DEPTH):
            raise ClientException(f"the JSON body is nested more than {MAX_JSON_DEPTH} levels deep")
        return value


def invalid_body_reason(body: bytes, exc: Exception) -> str:
    """Why a body that did not decode is refused: invalid UTF-8 (naming the first bad byte) before bad JSON."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"the body is not valid UTF-8: byte 0x{body[bad.start]:02x} at position {bad.start}"
    detail = exc.detail if isinstance(exc, SerializationException) else str(exc)
    return f"the body is not valid JSON: {detail}"


def check_media_type(content_type: str | None) -> None:
    """Refuses (415) a body declared as anything but JSON in UTF-8; an absent Content-Type is taken as JSON."""
    if content_type is None:
        return
    media_type, *params = (part.strip().lower() for part in content_type.split(";"))
    charset = next((p.partition("=")[2].strip('"') for p in params if p.startswith("charset=")), "utf-8")
    if not _JSON_TYPE.match(media_type) or charset not in ("utf-8", "utf8"):
        raise HTTPException(
            status_code=415, detail=f"send the body as application/json in UTF-8, not {content_type[:100]!r}"
        )


def too_deep(value: Any, limit: int) -> bool:
    """Whether objects and arrays in ``value`` nest more than ``limit`` levels (a scalar is level 0)."""
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
