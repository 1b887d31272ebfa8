"""The :class:`FakeVLLM` behind a real HTTP server (uvicorn on a loopback port), so the real app reaches it by URL.

It answers exactly what the fake answers, streaming SSE bodies event by event, and adds the faults that only a real
connection can show (each consumed by one request, from the same ``fake.faults`` queue):

    ("delay", seconds)          wait before answering normally (``("delay", 0)`` lets one request through untouched)
    ("stall", seconds)          a stream sends its first event, then nothing for ``seconds``
    ("drop", events)            a stream sends ``events`` events, then the connection is cut mid-body

The in-process faults ``("connect_error",)`` and ``("read_timeout",)`` raise inside the transport only; over a real
connection use a closed port and ``delay`` instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import httpx

from tests.fakes.vllm import FakeVLLM
from tests.integration.conftest import running


class _Dropped(Exception):
    """Raised inside the ASGI app to make uvicorn cut the connection mid-body."""


class FakeVLLMApp:
    def __init__(self, fake: FakeVLLM) -> None:
        self.fake = fake

    def _take(self, kind: str) -> float | None:
        faults = self.fake.faults
        if faults and faults[0][0] == kind:
            return float(faults.pop(0)[1])
        return None

    def _answer(self, request: httpx.Request, *, took_fault: bool) -> httpx.Response:
        """The fake's answer; a request that already took its fault here takes no second one from the queue."""
        if not took_fault:
            return self.fake.handle(request)
        queued, self.fake.faults = self.fake.faults, []
        try:
            return self.fake.handle(request)
        finally:
            self.fake.faults = queued

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        url = f"http://fake{scope['path']}" + (f"?{scope['query_string'].decode()}" if scope["query_string"] else "")
        headers = [(k.decode(), v.decode()) for k, v in scope["headers"]]
        request = httpx.Request(scope["method"], url, headers=headers, content=body)
        delay = self._take("delay")
        if delay is not None:
            with anyio.move_on_after(delay):
                while (await receive())["type"] != "http.disconnect":
                    pass
                self.fake.requests.append(request)  # the client gave up: received, never answered
                return
        stall, drop = self._take("stall"), self._take("drop")
        response = self._answer(request, took_fault=delay is not None or stall is not None or drop is not None)
        raw_headers = [(k.lower().encode(), v.encode()) for k, v in response.headers.items()]
        await send({"type": "http.response.start", "status": response.status_code, "headers": raw_headers})
        sent = 0
        async for event in response.stream:  # type: ignore[union-attr]
            if drop is not None and sent >= drop:
                raise _Dropped
            await send({"type": "http.response.body", "body": event, "more_body": True})
            sent += 1
            if stall is not None and sent == 1:
                await anyio.sleep(stall)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


@contextmanager
def fake_vllm_server(fake: FakeVLLM) -> Iterator[str]:
    """Serves ``fake`` on 127.0.0.1 and yields its OpenAI base URL (``http://127.0.0.1:PORT/v1``)."""
    with running(FakeVLLMApp(fake), timeout=10) as url:
        yield f"{url}/v1"
