"""What a policy does to a set of queries, and which policy gives a wanted route mix.

Both work on an ``(n, routes)`` matrix of calibrated success probabilities: the scores of recent traffic, or the
out-of-fold scores of a labelled outcomes file.

* :func:`expected` — the route mix a policy produces, the expected success rate (the mean calibrated probability of
  the chosen route: an estimate, exact only as far as the calibration is), and the mean cost in retrieval calls.
  Given :class:`Labels` (per query and route: was the answer right, what did it cost), also the measured exact
  match and the measured cost of the routes taken.
* :func:`calibrate` — the policy whose mix is nearest a target. Two numbers set a mix of three routes, so two
  parameters are searched: ``cost_weight`` (the knob: more ``ft`` as it grows), and one floor that shifts traffic
  between the retrieving routes, either the ``both`` threshold (fewer ``both``: it must be surer to be taken) or
  the ``rag`` threshold (more ``both``: ``rag`` must be surer), the other kept at its base value, as is ``ft``'s.
  The floors tried are quantiles of the scores, so the search is exhaustive over a grid and returns the grid's best
  mix (L1 distance to the target), ties broken towards the higher expected success.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from models.policy import MAX_COST_WEIGHT, Policy, Thresholds, decide_batch
from models.routes import ROUTES

KNOB_GRID = np.array([0.0, *(float(f"{knob:.3g}") for knob in np.geomspace(1e-4, MAX_COST_WEIGHT, 99))])
"""Knob values tried: 0, then log-spaced from 1e-4 to the maximum, at three significant digits (easy to read back)."""
QUANTILES = np.linspace(0.0, 1.0, 41)


@dataclass(frozen=True)
class Labels:
    """Measured outcomes, ``(n, routes)`` like the probabilities: exact match (0/1) and cost in retrieval calls."""

    em: npt.NDArray[np.float64]
    cost: npt.NDArray[np.float64]


@dataclass(frozen=True)
class Expectation:
    mix: dict[str, float]
    success: float
    """Mean calibrated success probability of the chosen routes."""
    cost: float
    """Mean retrieval calls of the chosen routes (measured ones when labels were given, else the policy's)."""
    queries: int
    em: float | None = None
    """Measured exact match of the chosen routes; None without labels."""


def expected(probabilities: npt.NDArray[np.float64], policy: Policy, labels: Labels | None = None) -> Expectation:
    if probabilities.ndim != 2 or probabilities.shape[1] != len(ROUTES) or len(probabilities) == 0:
        raise ValueError(f"need a non-empty (n, {len(ROUTES)}) probability matrix, got {probabilities.shape}")
    if labels is not None and not probabilities.shape == labels.em.shape == labels.cost.shape:
        raise ValueError("labels must have the probability matrix's shape")
    choices = decide_batch(probabilities, policy)
    rows = np.arange(len(choices))
    counts = np.bincount(choices, minlength=len(ROUTES)) / len(choices)
    cost = labels.cost[rows, choices] if labels is not None else np.asarray(policy.costs)[choices]
    return Expectation(
        mix={route: round(float(share), 4) for route, share in zip(ROUTES, counts, strict=True)},
        success=round(float(probabilities[rows, choices].mean()), 4),
        cost=round(float(cost.mean()), 4),
        queries=len(choices),
        em=None if labels is None else round(float(labels.em[rows, choices].mean()), 4),
    )


def target_vector(target_mix: Mapping[str, float]) -> npt.NDArray[np.float64]:
    """The full mix from a partial one (``{"rag": 0.3, "both": 0.1}`` gives ``ft`` the remaining 0.6)."""
    unknown = set(target_mix) - set(ROUTES)
    if unknown:
        raise ValueError(f"unknown routes {sorted(unknown)} in target_mix; routes are {list(ROUTES)}")
    if any(not 0.0 <= share <= 1.0 for share in target_mix.values()):
        raise ValueError("every share in target_mix must be within [0, 1]")
    given = sum(target_mix.values())
    missing = [route for route in ROUTES if route not in target_mix]
    if given > 1.0 + 1e-9 or (not missing and abs(given - 1.0) > 1e-6):
        raise ValueError(f"target_mix shares sum to {given:g}; they must sum to 1 (or less, when a route is left out)")
    rest = (1.0 - given) / len(missing) if missing else 0.0
    return np.array([target_mix.get(route, rest) for route in ROUTES], dtype=np.float64)


@dataclass(frozen=True)
class Proposal:
    policy: Policy
    expectation: Expectation
    distance: float
    """L1 distance between the proposal's mix and the target (0 = exact; at most 2)."""


def calibrate(
    probabilities: npt.NDArray[np.float64],
    target_mix: Mapping[str, float],
    base: Policy,
    labels: Labels | None = None,
) -> Proposal:
    """The policy, derived from ``base``, whose mix on ``probabilities`` is nearest ``target_mix``; with
    ``labels``, the proposal's expectation carries the measured exact match and cost too."""
    target = target_vector(target_mix)
    best: tuple[float, float, Policy] | None = None
    for thresholds in _floor_candidates(probabilities, base.thresholds):
        for knob in KNOB_GRID:
            policy = replace(base, thresholds=thresholds, cost_weight=float(knob))
            choices = decide_batch(probabilities, policy)
            mix = np.bincount(choices, minlength=len(ROUTES)) / len(choices)
            distance = float(np.abs(mix - target).sum())
            success = float(probabilities[np.arange(len(choices)), choices].mean())
            if best is None or (round(distance, 9), -success) < (round(best[0], 9), -best[1]):
                best = (distance, success, policy)
    assert best is not None
    return Proposal(best[2], expected(probabilities, best[2], labels), round(best[0], 4))


def _floor_candidates(probabilities: npt.NDArray[np.float64], base: Thresholds) -> list[Thresholds]:
    """The base thresholds, then each with the ``both`` or the ``rag`` floor moved to a quantile of its scores."""
    found = [base]
    for route in ("both", "rag"):
        column = probabilities[:, ROUTES.index(route)]
        for floor in np.unique(np.clip(np.quantile(column, QUANTILES), 0.0, 1.0)):
            found.append(Thresholds.from_mapping(base.as_dict() | {route: float(floor)}))
    return found
