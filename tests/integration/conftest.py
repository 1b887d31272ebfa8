"""The real app served by uvicorn on a loopback port, with a real LanceDB table (sample corpus) in a temp dir."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from router.documents.ingestion import ingest
from router.lib.settings import ServerSettings, Settings
from router.server.app import create_app
from router.server.http import server_config
from router.server.resources import open_store


@dataclass
class LiveService:
    url: str
    settings: Settings
    log: io.StringIO

    def events(self, name: str) -> list[dict]:
        lines = [json.loads(line) for line in self.log.getvalue().splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("event") == name]


_captures: list[logging.Handler] = []
"""The log capture of every server running now: each one sees every line, whichever server logged it."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ingest_corpus(settings: Settings, embedder, corpus: Path) -> None:
    async def run() -> None:
        store = await open_store(settings, embedder.dimension)
        await ingest(
            [corpus],
            store,
            embedder,
            max_chars=settings.retrieval.chunk_max_chars,
            overlap_chars=settings.retrieval.chunk_overlap_chars,
        )

    asyncio.run(run())


@contextmanager
def running(app: Any, timeout: float = 60, server_settings: ServerSettings | None = None) -> Iterator[str]:
    """Serves an ASGI ``app`` with uvicorn in a thread on a free loopback port; yields its base URL. With
    ``server_settings``, through the same guarded server configuration as ``router serve``."""
    port = free_port()
    if server_settings is None:
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    else:
        config = server_config(app, server_settings, host="127.0.0.1", port=port)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{type(app).__name__} did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextmanager
def serve(settings: Settings) -> Iterator[LiveService]:
    """Runs the app in a uvicorn thread until the generator is closed; JSON log lines are captured."""
    app = create_app(settings)  # configures logging: replaces the root handlers, those of running servers too
    log = io.StringIO()
    capture = logging.StreamHandler(log)
    capture.setFormatter(logging.getLogger().handlers[0].formatter)
    _captures.append(capture)
    for handler in _captures:
        logging.getLogger().addHandler(handler)
    try:
        with running(app, server_settings=settings.server) as url:
            yield LiveService(url=url, settings=settings, log=log)
    finally:
        logging.getLogger().removeHandler(capture)
        _captures.remove(capture)


def sse_events(text: str) -> list[tuple[str, Any]]:
    """``(event, data)`` pairs of a named-event SSE body (one JSON ``data:`` line per event)."""
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


@pytest.fixture(scope="session")
def corpus_uri(tmp_path_factory: pytest.TempPathFactory, embedder, corpus_dir: Path) -> str:
    """A LanceDB directory holding the ingested sample corpus, for tests that only read it."""
    uri = str(tmp_path_factory.mktemp("lancedb-corpus"))
    ingest_corpus(Settings(retrieval={"uri": uri}), embedder, corpus_dir)
    return uri


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory, embedder, corpus_dir: Path) -> Iterator[LiveService]:
    """The service on defaults (extractive generator, default bundle) over the sample corpus."""
    settings = Settings(
        retrieval={"uri": str(tmp_path_factory.mktemp("lancedb"))},
        log={"format": "json"},
        server={"max_query_chars": 500},
    )
    ingest_corpus(settings, embedder, corpus_dir)
    with serve(settings) as service:
        yield service


@pytest.fixture
def http(live: LiveService) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=30) as client:
        yield client
