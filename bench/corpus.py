"""Benchmark inputs: real questions, and generated document tables shaped like real embeddings.

Generated chunks are not uniform noise (on which every ANN index looks bad and exact search looks good): each is a
real embedding (a benchmark question or a sample-corpus chunk, embedded with the service's model) plus Gaussian
noise, renormalised, so the table has the topical clusters of a real corpus. A chunk's cosine to its centre is
about 0.7. Queries are other benchmark questions, embedded the same way.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import lancedb
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from backends.lancedb.documents import DocumentStore, table_schema
from models.embedder import Embedder

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "outcomes_sample.jsonl"
CORPUS = ROOT / "deploy" / "sample-corpus"
TABLES = ROOT / "var" / "bench"
NOISE = 0.052  # per dimension, for 384-d: cosine to the centre ~0.7
WRITE_BATCH = 100_000
FORMAT = 2
"""Bumped when the generated rows change, so a cached table of an older shape is not reused (2: realistic sections)."""


def questions(split: str | None = None) -> list[str]:
    """The benchmark sample's questions (tests/data, in the repo): 420 real multi-domain questions."""
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]
    return [r["question"] for r in rows if split is None or r["split"] == split]


def centre_texts() -> list[str]:
    texts = questions("dev_500")
    for path in sorted(CORPUS.glob("*.md")):
        texts.extend(p.strip() for p in path.read_text().split("\n\n") if len(p.strip()) > 40)
    return texts


def _unit(rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


async def document_table(embedder: Embedder, rows: int, *, log: bool = True) -> Path:
    """A LanceDB directory holding ``rows`` generated chunks in the service's schema, with the ANN index the service
    would build (kept under var/bench/ and reused: 1M rows take minutes to write and index)."""
    path = TABLES / f"lancedb-{rows}-v{FORMAT}"
    store = await DocumentStore.open(str(path), "chunks", embedder.dimension, index_threshold=1)
    if await store.count() == rows and await store.ensure_index():
        return path
    texts = centre_texts()
    centres = embedder.encode(texts)
    db = await lancedb.connect_async(str(path))
    table = await db.create_table("chunks", schema=table_schema(embedder.dimension), mode="overwrite")
    rng = np.random.default_rng(rows)
    now = datetime.now(UTC)
    started = time.perf_counter()
    for start in range(0, rows, WRITE_BATCH):
        n = min(WRITE_BATCH, rows - start)
        labels = rng.integers(0, len(centres), n)
        sections = rng.integers(0, 12, n)  # heading breadcrumbs, a third of chunks without one (stored as null)
        vectors = _unit(centres[labels] + rng.normal(scale=NOISE, size=(n, embedder.dimension)).astype(np.float32))
        ids = [f"gen-{start + i}" for i in range(n)]
        batch = {
            "chunk_id": [f"{i}#0" for i in ids],
            "doc_id": ids,
            "chunk_index": [0] * n,
            "section": [
                None if k % 3 == 0 else f"generated {label} > part {k}"
                for label, k in zip(labels, sections, strict=True)
            ],
            "text": [texts[label][:400] for label in labels],
            "title": [f"generated {label}" for label in labels],
            "uri": [f"bench://{i}" for i in ids],
            "content_sha256": [""] * n,
            "ingested_at": [now] * n,
            "vector": list(vectors),
        }
        await table.add(pa.Table.from_pydict(batch, schema=table_schema(embedder.dimension)))
    store = await DocumentStore.open(str(path), "chunks", embedder.dimension, index_threshold=1)
    await store.ensure_index()
    if log:
        print(f"  generated and indexed {rows:,} chunks in {time.perf_counter() - started:.0f} s ({path})")
    return path


def query_vectors(embedder: Embedder) -> tuple[list[str], npt.NDArray[np.float32]]:
    texts = questions("test")
    return texts, embedder.encode(texts)


if __name__ == "__main__":  # python -m bench.corpus: build the tables ahead of a run
    from models.embedder import load_embedder

    for n in (100_000, 1_000_000):
        asyncio.run(document_table(load_embedder(), n))
