"""The route classifier: per route, a calibrated probability that the route answers correctly.

Each route has its own head: a linear model over the query embedding (trained with scikit-learn's
``LogisticRegression``) whose decision score ``f = w·x + b`` is mapped to a probability by a calibrator fitted on
out-of-fold scores. Two calibrators are supported:

- ``sigmoid`` (Platt scaling): ``p = 1 / (1 + exp(-(a·f + c)))``;
- ``isotonic``: a monotone piecewise-linear map through the knots ``(x_k, y_k)``, clipped at both ends.

The fitted parameters are stored as plain arrays, so inference is a matrix product and a map in numpy (no pickle,
no scikit-learn version coupling), and exactly equals scikit-learn's own ``decision_function`` + calibrator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from models.routes import ROUTES

CalibrationMethod = Literal["sigmoid", "isotonic"]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Calibrator:
    """Maps decision scores to probabilities. ``sigmoid``: ``knots_x = [a, c]``; ``isotonic``: the knots."""

    method: CalibrationMethod
    knots_x: FloatArray
    knots_y: FloatArray

    def __call__(self, scores: FloatArray) -> FloatArray:
        if self.method == "sigmoid":
            a, c = self.knots_x
            sigmoid: FloatArray = 1.0 / (1.0 + np.exp(-(a * scores + c)))
            return sigmoid
        return np.interp(scores, self.knots_x, self.knots_y)


@dataclass(frozen=True)
class RouteClassifier:
    """Linear heads (one row of ``weights`` per route, in ``ROUTES`` order) and their calibrators."""

    weights: FloatArray
    biases: FloatArray
    calibrators: tuple[Calibrator, ...]

    def __post_init__(self) -> None:
        routes = len(ROUTES)
        if self.weights.ndim != 2 or self.weights.shape[0] != routes:
            raise ValueError(f"weights must have shape ({routes}, dimension), got {self.weights.shape}")
        if self.biases.shape != (routes,) or len(self.calibrators) != routes:
            raise ValueError(f"expected {routes} biases and calibrators")

    @property
    def dimension(self) -> int:
        return int(self.weights.shape[1])

    def decision_function(self, embeddings: npt.NDArray[np.floating]) -> FloatArray:
        """Raw scores, shape ``(n, routes)``."""
        matrix = np.atleast_2d(np.asarray(embeddings, dtype=np.float64))
        if matrix.shape[1] != self.dimension:
            raise ValueError(f"embedding dimension {matrix.shape[1]} != classifier dimension {self.dimension}")
        return matrix @ self.weights.T + self.biases

    def predict_proba(self, embeddings: npt.NDArray[np.floating]) -> FloatArray:
        """Calibrated success probability per route, shape ``(n, routes)``."""
        scores = self.decision_function(embeddings)
        columns = [calibrate(scores[:, i]) for i, calibrate in enumerate(self.calibrators)]
        return np.clip(np.column_stack(columns), 0.0, 1.0)
