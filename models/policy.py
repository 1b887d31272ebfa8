"""The routing policy: a pure function from calibrated scores to a route, with thresholds and one cost knob.

Rule, for one query with calibrated success probabilities ``p_r`` and expected costs ``c_r`` (retrieval calls):

1. A route is *eligible* when ``p_r >= thresholds[r]`` (a floor: "take ``ft`` only when it is at least 60% likely to
   be right"). When no route is eligible, all are.
2. Among eligible routes, take the one maximising ``p_r - cost_weight * c_r``; ties go to the cheaper route.

``cost_weight`` is the knob that moves the policy along the cost/quality curve. It reads as "success probability
given up per retrieval call": at 0.02, a route that costs one more retrieval call is taken only if it is at least
2 points more likely to be right. 0 takes the most likely route; a very large value takes the cheapest eligible one
(so thresholds alone then give "the cheapest route that clears its threshold").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from models.routes import DEFAULT_COSTS, ROUTES, Route

MAX_COST_WEIGHT = 10.0


@dataclass(frozen=True)
class Thresholds:
    """Minimum predicted success probability for each route to be eligible."""

    ft: float = 0.0
    rag: float = 0.0
    both: float = 0.0

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
                f"thresholds need exactly the routes {list(ROUTES)}; "
                f"unknown {sorted(unknown)}, missing {sorted(missing)}"
            )
        return cls(**{route: float(values[route]) for route in ROUTES})

    def as_dict(self) -> dict[str, float]:
        return {route: float(getattr(self, route)) for route in ROUTES}

    def as_array(self) -> npt.NDArray[np.float64]:
        return np.array([getattr(self, route) for route in ROUTES], dtype=np.float64)


@dataclass(frozen=True)
class Policy:
    thresholds: Thresholds = field(default_factory=Thresholds)
    cost_weight: float = 0.0
    costs: tuple[float, ...] = tuple(DEFAULT_COSTS[route] for route in ROUTES)

    def __post_init__(self) -> None:
        if not (0.0 <= self.cost_weight <= MAX_COST_WEIGHT or math.isinf(self.cost_weight)):
            raise ValueError(f"cost_weight must be within [0, {MAX_COST_WEIGHT}], got {self.cost_weight}")
        if len(self.costs) != len(ROUTES):
            raise ValueError(f"expected one cost per route {list(ROUTES)}")


def decide_batch(probabilities: npt.NDArray[np.float64], policy: Policy) -> npt.NDArray[np.intp]:
    """Route indices (into ``ROUTES``) for an ``(n, routes)`` probability matrix."""
    costs = np.asarray(policy.costs, dtype=np.float64)
    eligible = probabilities >= policy.thresholds.as_array()
    eligible[~eligible.any(axis=1)] = True
    penalty = costs if math.isinf(policy.cost_weight) else policy.cost_weight * costs
    utility = np.where(eligible, (0.0 if math.isinf(policy.cost_weight) else probabilities) - penalty, -np.inf)
    order = np.argsort(costs, kind="stable")  # cheapest first: argmax breaks ties towards it
    choices: npt.NDArray[np.intp] = order[np.argmax(utility[:, order], axis=1)]
    return choices


def decide(scores: Mapping[str, float], policy: Policy) -> Route:
    """The route for one query's calibrated scores (see the module docstring for the rule)."""
    row = np.array([[scores[route] for route in ROUTES]], dtype=np.float64)
    return ROUTES[int(decide_batch(row, policy)[0])]
