"""The ANN index on ``vector``: built automatically at ``index_threshold`` rows, kept fresh, and accurate.

The corpus is synthetic but shaped like sentence embeddings: 384-d unit vectors around 50 cluster centres.
"""

from __future__ import annotations

import time
from pathlib import Path

import lancedb
import numpy as np
import numpy.typing as npt
import pytest

from backends.documents import Chunk
from backends.lancedb import DocumentStore
from backends.lancedb.ranking import cosine_distances

DIM = 384
CLUSTERS = 50
NOISE = 0.05  # per dimension: a chunk's cosine to its cluster centre is ~0.7, to a neighbour in it ~0.5


def _unit(rows: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _centres(rng: np.random.Generator) -> npt.NDArray[np.float32]:
    return _unit(rng.normal(size=(CLUSTERS, DIM)))


def _around(
    rng: np.random.Generator, centres: npt.NDArray[np.float32], labels: npt.NDArray[np.int64]
) -> npt.NDArray[np.float32]:
    """One noisy unit vector per label, around that label's centre."""
    return _unit(centres[labels] + rng.normal(scale=NOISE, size=(len(labels), DIM)))


async def _write(store: DocumentStore, doc_id: str, vectors: npt.NDArray[np.float32]) -> None:
    chunks = [Chunk(i, "", f"synthetic chunk {i} of {doc_id}") for i in range(len(vectors))]
    await store.upsert_document(
        doc_id, title=doc_id, uri=f"test://{doc_id}", content_sha256=doc_id, chunks=chunks, vectors=vectors
    )


async def _vector_index(path: Path) -> object | None:
    """The table's vector index statistics, read through LanceDB directly (None when there is no such index)."""
    table = await (await lancedb.connect_async(str(path))).open_table("chunks")
    names = [ix.name for ix in await table.list_indices() if list(ix.columns) == ["vector"]]
    return await table.index_stats(names[0]) if names else None


async def test_index_is_built_at_the_threshold_and_keeps_recall_at_10(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    centres = _centres(rng)
    corpus = _around(rng, centres, rng.integers(0, CLUSTERS, 5_000))
    queries = _around(rng, centres, rng.integers(0, CLUSTERS, 50))
    store = await DocumentStore.open(str(tmp_path / "db"), "chunks", DIM, index_threshold=1_000)
    assert not await store.ensure_index()  # empty table: below the threshold

    await _write(store, "part-0", corpus[:1_000])
    built = await _vector_index(tmp_path / "db")
    assert built is not None and built.index_type == "IVF_SQ" and built.distance_type == "cosine"
    for part in range(1, 5):
        await _write(store, f"part-{part}", corpus[part * 1_000 : (part + 1) * 1_000])
    stats = await _vector_index(tmp_path / "db")
    assert stats is not None and stats.num_indexed_rows == 5_000 and stats.num_unindexed_rows == 0
    assert await store.ensure_index()

    recalls, ann_seconds, exact_seconds = [], 0.0, 0.0
    for query in queries:
        start = time.perf_counter()
        ann = await store.search(query, 10)
        ann_seconds += time.perf_counter() - start
        start = time.perf_counter()
        exact = await store.exact_search(query, 10)
        exact_seconds += time.perf_counter() - start
        recalls.append(len({p.chunk_id for p in ann} & {p.chunk_id for p in exact}) / 10)
        assert [p.score for p in ann] == pytest.approx([p.score for p in exact], abs=2e-4)  # re-scored exactly
    print(f"recall@10 {np.mean(recalls):.3f}; {ann_seconds * 20:.1f} ms/query ANN, {exact_seconds * 20:.1f} exact")
    assert np.mean(recalls) >= 0.95


async def test_no_index_below_the_threshold(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    store = await DocumentStore.open(str(tmp_path / "db"), "chunks", DIM, index_threshold=500)
    await _write(store, "small", _around(rng, _centres(rng), rng.integers(0, CLUSTERS, 300)))
    assert not await store.ensure_index()
    assert await _vector_index(tmp_path / "db") is None
    assert len(await store.search(np.ones(DIM, dtype=np.float32), 5)) == 5  # exact search, no index needed


async def test_rows_written_after_the_index_are_found_before_it_is_refreshed(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    centres = _centres(rng)
    store = await DocumentStore.open(str(tmp_path / "db"), "chunks", DIM, index_threshold=1_000)
    await _write(store, "bulk", _around(rng, centres, rng.integers(0, CLUSTERS, 1_200)))
    late = _unit(rng.normal(size=(3, DIM)))  # far from every cluster
    await _write(store, "late", late)
    stats = await _vector_index(tmp_path / "db")
    assert stats is not None and stats.num_unindexed_rows == 3  # too few to refresh the index for
    hits = await store.search(late[1], 3)
    assert hits[0].chunk_id == "late#1" and hits[0].score == 1.0


async def test_filtered_searches_under_the_index_return_the_best_matching_rows(tmp_path: Path) -> None:
    """Filters that leave only rows in the partitions farthest from the query: a narrow one (a few chunks) is
    ranked exactly; a broad one goes through the index, which probes further partitions until it has k rows."""
    rng = np.random.default_rng(3)
    centres = _centres(rng)
    centres[-1] = -centres[0]  # the "far" documents sit at the antipode of the query
    narrow = _around(rng, centres, np.full(40, CLUSTERS - 1, dtype=np.int64))
    store = await DocumentStore.open(str(tmp_path / "db"), "chunks", DIM, index_threshold=3_240)
    await _write(store, "bulk", _around(rng, centres, rng.integers(0, CLUSTERS - 1, 2_000)))
    await _write(store, "far-wide", _around(rng, centres, np.full(1_200, CLUSTERS - 1, dtype=np.int64)))
    await _write(store, "far-narrow", narrow)
    stats = await _vector_index(tmp_path / "db")
    assert stats is not None and stats.num_indexed_rows == 3_240  # trained on every document

    hits = await store.search(centres[0], 10, filters={"doc_id": "far-narrow"})
    best = np.sort(narrow @ centres[0])[::-1][:10]
    assert {p.doc_id for p in hits} == {"far-narrow"}
    assert [p.score for p in hits] == pytest.approx(best.tolist(), abs=2e-4)

    hits = await store.search(centres[0], 10, filters={"doc_id": ["far-wide", "absent"]})
    assert len(hits) == 10 and {p.doc_id for p in hits} == {"far-wide"}


def test_cosine_distances() -> None:
    stored = np.array([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0], [0.0, 0.0]], dtype=np.float32)
    distances = cosine_distances(stored, np.array([5.0, 0.0], dtype=np.float32))
    assert distances[:3].tolist() == pytest.approx([0.0, 1.0, 2.0]) and np.isnan(distances[3])
