"""The document store on an ``s3://`` URI, against a local S3-compatible server (moto in server mode, loopback)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from backends.documents import Chunk
from backends.lancedb import DocumentStore
from models.embedder import SentenceTransformerEmbedder


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(endpoint, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        httpx.put(f"{endpoint}/router-test", timeout=5).raise_for_status()  # create the bucket
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


async def test_store_works_on_object_storage(s3_endpoint: str, embedder: SentenceTransformerEmbedder) -> None:
    options = {
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "aws_endpoint": s3_endpoint,
        "aws_region": "us-east-1",
        "allow_http": "true",
    }
    uri = "s3://router-test/lancedb"
    writer = await DocumentStore.open(uri, "chunks", embedder.dimension, storage_options=options)
    texts = ["Object storage keeps the table.", "Replicas read the same rows."]
    chunks = [Chunk(i, "Doc", text) for i, text in enumerate(texts)]
    vectors = embedder.encode([c.text for c in chunks])
    await writer.upsert_document(
        "doc", title="Doc", uri="test://doc", content_sha256="x", chunks=chunks, vectors=vectors
    )
    reader = await DocumentStore.open(uri, "chunks", embedder.dimension, storage_options=options)
    assert await reader.count() == 2
    hits = await reader.search(embedder.encode(["where is the table kept?"])[0], k=1)
    assert hits[0].chunk_id == "doc#0"
