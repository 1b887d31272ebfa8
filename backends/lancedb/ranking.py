"""Ranking maths of the document store: reciprocal rank fusion (hybrid search), the ANN index's configuration and
exact cosine distances (re-ranking, narrow filters)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from lancedb.index import IvfSq

RRF_K = 60


def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], k: int = RRF_K) -> list[tuple[str, float]]:
    """Fuses ranked id lists (best first): each id scores the sum of ``1 / (k + rank)`` over the lists it is in,
    rank counted from 1 (a repeat within one list counts once, at its best rank). Best first; ties keep the order
    in which ids first appear, earlier lists first."""
    if k < 0:
        raise ValueError(f"RRF k must be >= 0, not {k}")
    scores: dict[str, float] = {}
    for ranking in rankings:
        seen: set[str] = set()
        for rank, item in enumerate(ranking, start=1):
            if item not in seen:
                seen.add(item)
                scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: -pair[1])


def vector_index_config(rows: int) -> IvfSq:
    """IVF_SQ on cosine distance with ~sqrt(rows) partitions. Measured on 50,000 clustered 384-d unit vectors
    (2 CPU cores): IVF_SQ builds in ~8-13 s, recall@10 1.00, ~8 ms a search through this store (exhaustive: ~65 ms);
    IVF_PQ (48 sub-vectors) took 141 s and reached recall@10 0.84 even re-scoring 10x; IVF_HNSW_SQ took 43 s.
    On 5,000 rows IVF_SQ builds in 0.3 s. It keeps one byte per dimension: 384 B a chunk against PQ's 48 B."""
    return IvfSq(distance_type="cosine", num_partitions=max(1, round(math.sqrt(rows))))


def cosine_distances(stored: npt.NDArray[np.float32], query: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """``1 - cosine similarity`` between each row of ``stored`` and ``query``; NaN where either is all zeros."""
    norms = np.linalg.norm(stored, axis=1) * np.linalg.norm(query)
    with np.errstate(divide="ignore", invalid="ignore"):
        distances: npt.NDArray[np.float64] = 1.0 - (stored.astype(np.float64) @ query.astype(np.float64)) / norms
    return distances
