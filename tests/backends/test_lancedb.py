from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backends.documents import Chunk
from backends.errors import RetrievalError
from backends.lancedb import DocumentStore
from models.embedder import SentenceTransformerEmbedder


async def _upsert(store: DocumentStore, embedder: SentenceTransformerEmbedder, doc_id: str, texts: list[str]) -> None:
    chunks = [Chunk(i, "", text) for i, text in enumerate(texts)]
    await store.upsert_document(
        doc_id,
        title=doc_id.title(),
        uri=f"test://{doc_id}",
        content_sha256=str(hash(tuple(texts))),
        chunks=chunks,
        vectors=embedder.encode(texts),
    )


async def test_search_finds_the_relevant_chunk(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    store = await DocumentStore.open(str(tmp_path / "db"), "chunks", embedder.dimension)
    await _upsert(store, embedder, "cats", ["Cats are small domesticated felines.", "Cats purr when content."])
    await _upsert(store, embedder, "o'reilly", ["The GPU serves the language model with paged attention."])
    assert await store.count() == 3
    hits = await store.search(embedder.encode(["How does a GPU serve an LLM?"])[0], k=2)
    assert hits[0].doc_id == "o'reilly" and hits[0].chunk_id == "o'reilly#0"
    assert hits[0].score > hits[1].score
    assert hits[0].uri == "test://o'reilly"
    assert hits[0].text == "The GPU serves the language model with paged attention."


async def test_reingest_replaces_a_document_atomically(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    store = await DocumentStore.open(str(tmp_path / "db"), "chunks", embedder.dimension)
    await _upsert(store, embedder, "doc", ["one", "two", "three"])
    await _upsert(store, embedder, "other", ["keep me"])
    await _upsert(store, embedder, "doc", ["uno"])
    assert await store.count() == 2
    hashes = await store.content_hashes(["doc", "other", "absent"])
    assert set(hashes) == {"doc", "other"}
    await store.delete_document("doc")
    assert await store.count() == 1


async def test_table_with_other_dimension_is_refused(tmp_path: Path) -> None:
    await DocumentStore.open(str(tmp_path / "db"), "chunks", 8)
    with pytest.raises(RetrievalError, match="8"):
        await DocumentStore.open(str(tmp_path / "db"), "chunks", 384)


async def test_empty_table_returns_no_passages(tmp_path: Path) -> None:
    store = await DocumentStore.open(str(tmp_path / "db"), "chunks", 4)
    assert await store.search(np.ones(4, dtype=np.float32), k=3) == []


async def test_table_from_another_schema_is_refused_with_a_hint(tmp_path: Path) -> None:
    import lancedb
    import pyarrow as pa

    db = await lancedb.connect_async(str(tmp_path / "db"))
    old = pa.schema([pa.field("id", pa.string()), pa.field("vector", pa.list_(pa.float32(), 4))])
    await db.create_table("chunks", schema=old)
    with pytest.raises(RetrievalError, match="new table"):
        await DocumentStore.open(str(tmp_path / "db"), "chunks", 4)
