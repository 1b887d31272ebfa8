"""The training reference kept in a bundle (``reference.npz``): what live traffic is compared with.

* The labelled training questions with their embeddings, per-route outcomes and best route: a decision is explained
  by its nearest training questions and what worked for them.
* The bundle's scores on those questions and the embeddings' top principal components: drift is measured as the
  population stability index (PSI) of live scores and live embedding projections against these.

PSI over quantile bins of the reference: ``sum((live - ref) * ln(live / ref))``. Common reading: below 0.1 stable,
0.1 to 0.2 moderate shift, above 0.2 a shift worth acting on (:data:`DRIFT_ALERT`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from models.routes import ROUTES

REFERENCE = "reference.npz"
COMPONENTS = 4
BINS = 10
DRIFT_ALERT = 0.2
"""PSI above which the drift index raises an alert."""
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Neighbour:
    question: str
    best_route: str | None
    """The cheapest route that answered it correctly; None when none did."""
    similarity: float
    em: dict[str, float]


@dataclass(frozen=True)
class Reference:
    questions: npt.NDArray[np.str_]
    vectors: npt.NDArray[np.float32]
    """L2-normalised embeddings, one row per question."""
    em: npt.NDArray[np.float32]
    scores: npt.NDArray[np.float32]
    """The bundle's calibrated probabilities on these questions (in-sample)."""
    mean: npt.NDArray[np.float32]
    components: npt.NDArray[np.float32]
    """Top principal components of the embeddings, ``(COMPONENTS, dimension)``."""

    def projections(self, vectors: npt.NDArray[np.floating]) -> FloatArray:
        centred = np.asarray(vectors, dtype=np.float64) - self.mean
        return np.asarray(centred @ self.components.T.astype(np.float64))

    def nearest(self, vector: npt.NDArray[np.floating], k: int = 5) -> list[Neighbour]:
        unit = np.asarray(vector, dtype=np.float32)
        unit = unit / max(float(np.linalg.norm(unit)), 1e-12)
        similarity = self.vectors @ unit
        top = np.argsort(-similarity)[:k]
        return [
            Neighbour(
                question=str(self.questions[i]),
                best_route=best_route(self.em[i]),
                similarity=round(float(similarity[i]), 4),
                em={route: float(self.em[i, j]) for j, route in enumerate(ROUTES)},
            )
            for i in top
        ]


def best_route(em: npt.NDArray[np.floating]) -> str | None:
    """The cheapest route (``ROUTES`` is ordered by cost) that answered correctly."""
    correct = np.flatnonzero(np.asarray(em) > 0)
    return ROUTES[int(correct[0])] if len(correct) else None


def build_reference(
    questions: Sequence[str], vectors: npt.NDArray[np.floating], em: npt.NDArray[np.floating], scores: FloatArray
) -> Reference:
    matrix = np.asarray(vectors, dtype=np.float64)
    mean = matrix.mean(axis=0)
    _, _, vt = np.linalg.svd(matrix - mean, full_matrices=False)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return Reference(
        questions=np.asarray(list(questions), dtype=np.str_),
        vectors=(matrix / np.maximum(norms, 1e-12)).astype(np.float32),
        em=np.asarray(em, dtype=np.float32),
        scores=np.asarray(scores, dtype=np.float32),
        mean=mean.astype(np.float32),
        components=vt[:COMPONENTS].astype(np.float32),
    )


def reference_bytes(reference: Reference) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        questions=reference.questions,
        vectors=reference.vectors.astype(np.float16),
        em=reference.em.astype(np.int8),
        scores=reference.scores.astype(np.float16),
        mean=reference.mean,
        components=reference.components,
    )
    return buffer.getvalue()


def load_reference(directory: Path) -> Reference | None:
    """The bundle's reference, or None for a bundle without one (explanations and drift are then unavailable)."""
    path = directory / REFERENCE
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as arrays:
        return Reference(
            questions=arrays["questions"],
            vectors=arrays["vectors"].astype(np.float32),
            em=arrays["em"].astype(np.float32),
            scores=arrays["scores"].astype(np.float32),
            mean=arrays["mean"],
            components=arrays["components"],
        )


def psi(reference: npt.NDArray[np.floating], live: npt.NDArray[np.floating], bins: int = BINS) -> float:
    """Population stability index of ``live`` against ``reference`` over the reference's quantile bins."""
    edges = np.unique(np.quantile(np.asarray(reference, dtype=np.float64), np.linspace(0, 1, bins + 1)))
    if len(edges) < 2 or len(live) == 0:
        return 0.0
    inner = edges[1:-1]
    expected = np.bincount(np.searchsorted(inner, reference, side="right"), minlength=len(edges) - 1)
    actual = np.bincount(np.searchsorted(inner, live, side="right"), minlength=len(edges) - 1)
    eps = 1e-4
    p = np.maximum(expected / expected.sum(), eps)
    q = np.maximum(actual / actual.sum(), eps)
    return round(float(np.sum((q - p) * np.log(q / p))), 4)


@dataclass(frozen=True)
class Drift:
    index: float
    """The largest of the per-route score PSIs and the embedding PSI."""
    scores: dict[str, float]
    embedding: float
    """Mean PSI of the live embeddings' projections on the reference's principal components."""
    alert: bool


def drift(reference: Reference, live_scores: FloatArray, live_vectors: npt.NDArray[np.floating]) -> Drift:
    per_route: dict[str, float] = {
        route: psi(reference.scores[:, j], live_scores[:, j]) for j, route in enumerate(ROUTES)
    }
    ref_proj = reference.projections(reference.vectors)
    live_proj = reference.projections(live_vectors)
    embedding = round(float(np.mean([psi(ref_proj[:, c], live_proj[:, c]) for c in range(ref_proj.shape[1])])), 4)
    index = max([*per_route.values(), embedding])
    return Drift(index=index, scores=per_route, embedding=embedding, alert=index > DRIFT_ALERT)
