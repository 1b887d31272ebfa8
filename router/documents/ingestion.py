"""Documents -> chunks -> embeddings -> LanceDB, idempotent per document: ``router ingest`` and ``POST /v1/documents``.

A document whose text, title, uri and chunking settings are unchanged since its last ingest is skipped; a changed
one has all its chunks replaced in one commit. Chunking and embedding run in worker threads, off the event loop;
the chunks of several documents are embedded together, up to ``EMBED_BATCH`` per ``encode`` call.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

import anyio
import numpy as np
from tqdm import tqdm

from backends.documents import Chunk, Document, chunk_text, read_documents
from backends.lancedb import DocumentInfo, DocumentStore
from models.embedder import Embedder, Vectors

LOOKUP_BATCH = 500
EMBED_BATCH = 256

Status = Literal["added", "updated", "unchanged"]


@dataclass(frozen=True)
class DocumentResult:
    id: str
    status: Status
    chunks: int


@dataclass
class IngestReport:
    documents: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    chunks_written: int = 0
    total_chunks: int = 0
    results: list[DocumentResult] = field(default_factory=list)
    """One per document, in input order."""

    def counts(self) -> dict[str, int]:
        """The totals, without the per-document results."""
        return {k: v for k, v in asdict(self).items() if k != "results"}


@dataclass(frozen=True)
class _Pending:
    document: Document
    digest: str
    status: Status
    chunks: list[Chunk]


def content_hash(document: Document, max_chars: int, overlap_chars: int) -> str:
    key = f"{max_chars}:{overlap_chars}:{document.title}:{document.uri}\n{document.text}"
    return hashlib.sha256(key.encode()).hexdigest()


class _Writer:
    """Collects changed documents' chunks and writes them once ``EMBED_BATCH`` chunks are waiting; keeps the
    result of every document, written or not."""

    def __init__(self, store: DocumentStore, embedder: Embedder, limiter: anyio.CapacityLimiter | None) -> None:
        self.store, self.embedder, self.limiter = store, embedder, limiter
        self.pending: list[_Pending] = []
        self.results: dict[str, DocumentResult] = {}

    async def add(self, item: _Pending) -> int:
        """Queues one document; returns how many documents were written by this call."""
        self.pending.append(item)
        if sum(len(p.chunks) for p in self.pending) < EMBED_BATCH:
            return 0
        return await self.flush()

    async def flush(self) -> int:
        """Embeds every waiting chunk, then writes each document in its own commit; returns how many."""
        written, self.pending = self.pending, []
        vectors = await self._embed([chunk.text for item in written for chunk in item.chunks])
        offset = 0
        for item in written:
            doc, count = item.document, len(item.chunks)
            await self.store.upsert_document(
                doc.id,
                title=doc.title,
                uri=doc.uri,
                content_sha256=item.digest,
                chunks=item.chunks,
                vectors=vectors[offset : offset + count],
            )
            offset += count
            self.results[doc.id] = DocumentResult(doc.id, item.status, count)
        return len(written)

    async def _embed(self, texts: list[str]) -> Vectors:
        encode, limiter = self.embedder.encode, self.limiter
        batches = [
            await anyio.to_thread.run_sync(encode, texts[start : start + EMBED_BATCH], limiter=limiter)
            for start in range(0, len(texts), EMBED_BATCH)
        ]
        return np.concatenate(batches) if batches else np.zeros((0, self.embedder.dimension), np.float32)


async def _stored(store: DocumentStore, ids: list[str]) -> dict[str, DocumentInfo]:
    stored: dict[str, DocumentInfo] = {}
    for start in range(0, len(ids), LOOKUP_BATCH):
        stored |= await store.documents_info(ids[start : start + LOOKUP_BATCH])
    return stored


async def ingest_documents(
    documents: Iterable[Document],
    store: DocumentStore,
    embedder: Embedder,
    *,
    max_chars: int,
    overlap_chars: int,
    progress: bool = False,
    limiter: anyio.CapacityLimiter | None = None,
) -> IngestReport:
    """Writes the documents that are new or changed; ``limiter`` bounds the worker threads used for chunking and
    embedding (the service passes its embedding limiter). A repeated id: the last one wins."""
    by_id = {doc.id: doc for doc in documents}
    stored = await _stored(store, list(by_id))
    writer = _Writer(store, embedder, limiter)
    with tqdm(total=len(by_id), desc="ingesting", unit="doc", disable=not progress) as bar:
        for doc in by_id.values():
            digest, known = content_hash(doc, max_chars, overlap_chars), stored.get(doc.id)
            if known is not None and known.content_sha256 == digest:
                writer.results[doc.id] = DocumentResult(doc.id, "unchanged", known.chunks)
                bar.update()
                continue
            split = partial(chunk_text, doc.text, max_chars=max_chars, overlap_chars=overlap_chars)
            chunks = await anyio.to_thread.run_sync(split, limiter=limiter)
            bar.update(await writer.add(_Pending(doc, digest, "added" if known is None else "updated", chunks)))
        bar.update(await writer.flush())
    return await _report([writer.results[doc_id] for doc_id in by_id], store)


async def _report(results: list[DocumentResult], store: DocumentStore) -> IngestReport:
    statuses = Counter(result.status for result in results)
    return IngestReport(
        documents=len(results),
        added=statuses["added"],
        updated=statuses["updated"],
        unchanged=statuses["unchanged"],
        chunks_written=sum(result.chunks for result in results if result.status != "unchanged"),
        total_chunks=await store.count(),
        results=results,
    )


async def ingest(
    paths: list[Path],
    store: DocumentStore,
    embedder: Embedder,
    *,
    max_chars: int,
    overlap_chars: int,
    progress: bool = False,
) -> IngestReport:
    """``router ingest``: the documents in ``paths`` (files and directories; see ``backends.documents``)."""
    return await ingest_documents(
        read_documents(paths), store, embedder, max_chars=max_chars, overlap_chars=overlap_chars, progress=progress
    )
