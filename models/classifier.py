"""The route classifier: per route, a calibrated probability that the route answers correctly.

Each route has its own head: a linear model (scikit-learn's ``LogisticRegression``) over the query embedding,
optionally followed by the standardised question-shape features of ``models.features``. Its decision score
``f = w·x + b`` is mapped to a probability by a calibrator fitted on out-of-fold scores. Two calibrators are
supported:

- ``sigmoid`` (Platt scaling): ``p = 1 / (1 + exp(-(a·f + c)))``;
- ``isotonic``: a monotone piecewise-linear map through the knots ``(x_k, y_k)``, clipped at both ends.

The fitted parameters are stored as plain arrays, so inference is a matrix product and a map in numpy (no pickle,
no scikit-learn version coupling), and exactly equals scikit-learn's own ``decision_function`` + calibrator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np
import numpy.typing as npt

from models.features import question_shape
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
class ShapeScaler:
    """Standardises question-shape features with training-row statistics; scaled by 1/sqrt(k) so the block as a
    whole weighs about as much as one unit-norm embedding."""

    mean: FloatArray
    scale: FloatArray

    @classmethod
    def fit(cls, questions: Sequence[str]) -> ShapeScaler:
        shapes = question_shape(questions)
        return cls(shapes.mean(axis=0), shapes.std(axis=0) + 1e-9)

    def __call__(self, questions: Sequence[str]) -> FloatArray:
        scaled: FloatArray = (question_shape(questions) - self.mean) / self.scale / np.sqrt(len(self.mean))
        return scaled


@dataclass(frozen=True)
class RouteClassifier:
    """Linear heads (one row of ``weights`` per route, in ``ROUTES`` order) and their calibrators."""

    weights: FloatArray
    biases: FloatArray
    calibrators: tuple[Calibrator, ...]
    shape: ShapeScaler | None = None

    def __post_init__(self) -> None:
        routes = len(ROUTES)
        if self.weights.ndim != 2 or self.weights.shape[0] != routes:
            raise ValueError(f"weights must have shape ({routes}, features), got {self.weights.shape}")
        if self.biases.shape != (routes,) or len(self.calibrators) != routes:
            raise ValueError(f"expected {routes} biases and calibrators")
        if self.dimension <= 0:
            raise ValueError("no embedding columns left in the weights")

    @property
    def dimension(self) -> int:
        """The embedding dimension the classifier expects."""
        return int(self.weights.shape[1]) - (len(self.shape.mean) if self.shape else 0)

    def features(self, embeddings: npt.NDArray[np.floating], questions: Sequence[str]) -> FloatArray:
        matrix = np.atleast_2d(np.asarray(embeddings, dtype=np.float64))
        if matrix.shape[1] != self.dimension:
            raise ValueError(f"embedding dimension {matrix.shape[1]} != classifier dimension {self.dimension}")
        return self.features_of(matrix, questions, self.shape)

    @staticmethod
    def features_of(
        embeddings: npt.NDArray[np.floating], questions: Sequence[str], shape: ShapeScaler | None
    ) -> FloatArray:
        """The feature matrix: the embeddings, then (with a scaler) the scaled shape features of the questions."""
        matrix = np.atleast_2d(np.asarray(embeddings, dtype=np.float64))
        if shape is None:
            return matrix
        if len(questions) != len(matrix):
            raise ValueError("this classifier uses question-shape features: pass one question per embedding")
        return np.hstack([matrix, shape(questions)])

    def decision_function(self, embeddings: npt.NDArray[np.floating], questions: Sequence[str] = ()) -> FloatArray:
        """Raw scores, shape ``(n, routes)``."""
        return self.features(embeddings, questions) @ self.weights.T + self.biases

    def predict_proba(self, embeddings: npt.NDArray[np.floating], questions: Sequence[str] = ()) -> FloatArray:
        """Calibrated success probability per route, shape ``(n, routes)``."""
        scores = self.decision_function(embeddings, questions)
        if self._platt is not None:  # every head Platt-scaled: one vectorised map
            a, c = self._platt
            platt: FloatArray = 1.0 / (1.0 + np.exp(-(a * scores + c)))
            return platt
        columns = [calibrate(scores[:, i]) for i, calibrate in enumerate(self.calibrators)]
        return np.clip(np.column_stack(columns), 0.0, 1.0)

    @cached_property
    def _platt(self) -> tuple[FloatArray, FloatArray] | None:
        if any(c.method != "sigmoid" for c in self.calibrators):
            return None
        return np.array([c.knots_x[0] for c in self.calibrators]), np.array([c.knots_x[1] for c in self.calibrators])
