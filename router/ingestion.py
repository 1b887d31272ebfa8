"""``router ingest``: documents -> chunks -> embeddings -> LanceDB, idempotent per document.

A document whose text and chunking settings are unchanged since its last ingest is skipped; a changed one has
all its chunks replaced in one commit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import anyio
from tqdm import tqdm

from backends.documents import Document, chunk_text, read_documents
from backends.lancedb import DocumentStore
from models.embedder import Embedder

LOOKUP_BATCH = 500


@dataclass
class IngestReport:
    documents: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    chunks_written: int = 0
    total_chunks: int = 0


def content_hash(document: Document, max_chars: int, overlap_chars: int) -> str:
    key = f"{max_chars}:{overlap_chars}:{document.title}:{document.uri}\n{document.text}"
    return hashlib.sha256(key.encode()).hexdigest()


async def ingest(
    paths: list[Path],
    store: DocumentStore,
    embedder: Embedder,
    *,
    max_chars: int,
    overlap_chars: int,
    progress: bool = False,
) -> IngestReport:
    documents = {doc.id: doc for doc in read_documents(paths)}  # a repeated id: the last one wins
    ids = list(documents)
    stored: dict[str, str] = {}
    for start in range(0, len(ids), LOOKUP_BATCH):
        stored |= await store.content_hashes(ids[start : start + LOOKUP_BATCH])
    report = IngestReport(documents=len(documents))
    for doc in tqdm(documents.values(), desc="ingesting", unit="doc", disable=not progress):
        digest = content_hash(doc, max_chars, overlap_chars)
        if stored.get(doc.id) == digest:
            report.unchanged += 1
            continue
        chunks = chunk_text(doc.text, max_chars=max_chars, overlap_chars=overlap_chars)
        vectors = await anyio.to_thread.run_sync(embedder.encode, [c.text for c in chunks])
        await store.upsert_document(
            doc.id, title=doc.title, uri=doc.uri, content_sha256=digest, chunks=chunks, vectors=vectors
        )
        report.chunks_written += len(chunks)
        if doc.id in stored:
            report.updated += 1
        else:
            report.added += 1
    report.total_chunks = await store.count()
    return report
