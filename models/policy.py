"""The routing policy: a pure function from calibrated scores and thresholds to a route.

Meaning: routes are tried from cheapest to most expensive (``ft``, then ``rag``, then ``both``); the first route
whose predicted probability of answering correctly is at least its threshold is taken. If no route clears its
threshold, the route with the highest predicted probability is taken (ties go to the cheaper route).

So ``thresholds.ft = 0.6`` reads "answer from the fine-tuned model alone only when it is at least 60% likely to be
right"; raising it sends more traffic to retrieval, lowering it sends more to ``ft``. A threshold of 0 for ``both``
makes ``both`` the catch-all; a threshold of 1 takes a route only when it is certain (or most likely).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models.routes import ROUTES, Route


@dataclass(frozen=True)
class Thresholds:
    """Minimum predicted success probability for each route to be taken, in ``ROUTES`` order of cost."""

    ft: float
    rag: float
    both: float

    def __post_init__(self) -> None:
        for route in ROUTES:
            value = getattr(self, route)
            if not 0.0 <= value <= 1.0:  # also rejects NaN
                raise ValueError(f"threshold for {route} must be within [0, 1], got {value}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, float]) -> Thresholds:
        unknown = set(values) - set(ROUTES)
        missing = set(ROUTES) - set(values)
        if unknown or missing:
            raise ValueError(
                f"thresholds need exactly the routes {list(ROUTES)}; unknown {sorted(unknown)}, "
                f"missing {sorted(missing)}"
            )
        return cls(**{route: float(values[route]) for route in ROUTES})

    def as_dict(self) -> dict[str, float]:
        return {route: float(getattr(self, route)) for route in ROUTES}

    def as_array(self) -> npt.NDArray[np.float64]:
        return np.array([getattr(self, route) for route in ROUTES], dtype=np.float64)


def decide(scores: Mapping[str, float], thresholds: Thresholds) -> Route:
    """The route for one query's calibrated scores (see the module docstring for the rule)."""
    for route in ROUTES:
        if scores[route] >= getattr(thresholds, route):
            return route
    return max(ROUTES, key=lambda route: (scores[route], -ROUTES.index(route)))


def decide_batch(probabilities: npt.NDArray[np.float64], thresholds: Thresholds) -> npt.NDArray[np.intp]:
    """Vectorised :func:`decide`: route indices for an ``(n, routes)`` probability matrix."""
    clears = probabilities >= thresholds.as_array()
    first_clear = np.argmax(clears, axis=1)
    most_likely = np.argmax(probabilities, axis=1)
    choices: npt.NDArray[np.intp] = np.where(clears.any(axis=1), first_clear, most_likely).astype(np.intp)
    return choices
