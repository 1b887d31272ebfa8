"""The document store on an ``s3://`` URI, against a local S3-compatible server (moto in server mode, loopback)."""

from __future__ import annotations

from backends.documents import Chunk
from backends.lancedb import DocumentStore
from models.embedder import Embedder
from tests.conftest import S3_BUCKET, s3_options


async def test_store_works_on_object_storage(s3_endpoint: str, embedder: Embedder) -> None:
    options = s3_options(s3_endpoint)
    uri = f"s3://{S3_BUCKET}/lancedb"
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
