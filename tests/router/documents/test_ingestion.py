from __future__ import annotations

from pathlib import Path

import pytest

from backends.documents import Document
from backends.lancedb import DocumentStore
from models.embedder import Embedder, Vectors
from router.documents import ingestion
from router.documents.ingestion import ingest_documents


class CountingEmbedder:
    """The real embedder, recording the size of every ``encode`` call."""

    def __init__(self, inner: Embedder) -> None:
        self.inner, self.name, self.dimension = inner, inner.name, inner.dimension
        self.calls: list[int] = []

    def encode(self, texts: list[str], *, progress: bool = False) -> Vectors:
        self.calls.append(len(texts))
        return self.inner.encode(texts, progress=progress)


def document(doc_id: str, sections: int) -> Document:
    text = "\n\n".join(f"# Part {n}\n\nDocument {doc_id} says {n}." for n in range(sections))
    return Document(id=doc_id, text=text, title=doc_id, uri=f"test://{doc_id}")


async def test_chunks_of_several_documents_share_encode_calls(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingestion, "EMBED_BATCH", 4)
    store = await DocumentStore.open(str(tmp_path / "db"), "chunks", embedder.dimension)
    counting = CountingEmbedder(embedder)
    documents = [document("a", 1), document("b", 2), document("c", 1), document("d", 6), document("e", 1)]
    report = await ingest_documents(documents, store, counting, max_chars=500, overlap_chars=50)
    assert [(r.id, r.status, r.chunks) for r in report.results] == [
        ("a", "added", 1),
        ("b", "added", 2),
        ("c", "added", 1),
        ("d", "added", 6),
        ("e", "added", 1),
    ]
    assert sum(counting.calls) == 11 == report.chunks_written == report.total_chunks == await store.count()
    assert max(counting.calls) <= 4 and len(counting.calls) == 4  # [4] after a-c, [4, 2] after d, [1] at the end
    assert report.counts() == {
        "documents": 5,
        "added": 5,
        "updated": 0,
        "unchanged": 0,
        "chunks_written": 11,
        "total_chunks": 11,
    }


async def test_only_changed_documents_are_embedded_again(tmp_path: Path, embedder: Embedder) -> None:
    store = await DocumentStore.open(str(tmp_path / "db"), "chunks", embedder.dimension)
    counting = CountingEmbedder(embedder)
    await ingest_documents([document("a", 2), document("b", 3)], store, counting, max_chars=500, overlap_chars=50)
    counting.calls.clear()
    changed = [document("a", 2), document("b", 1), document("c", 1)]
    report = await ingest_documents(changed, store, counting, max_chars=500, overlap_chars=50)
    assert [(r.status, r.chunks) for r in report.results] == [("unchanged", 2), ("updated", 1), ("added", 1)]
    assert counting.calls == [2] and report.total_chunks == 4
    info = await store.document_info("b")
    assert info is not None and info.chunks == 1 and info.uri == "test://b"
    assert await store.delete_document("b") == 1 and await store.delete_document("b") == 0
    assert await store.document_info("b") is None
