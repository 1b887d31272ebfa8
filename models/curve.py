"""The cost/quality curve: sweeping a cost knob over a routing policy and summarising the frontier.

The knob is the policy's ``cost_weight`` (see ``models.policy``): among eligible routes it takes
``argmax_r p_r - cost_weight * c_r``, where ``c_r`` is the route's expected cost known at decision time. 0 takes the
most likely route; infinity the cheapest eligible one. Realised EM and cost come from the labelled outcomes.

Summaries, on the upper envelope (the best EM reachable at or under each cost):
- ``em_at_cost(budget)``: the best EM among swept points whose mean cost is <= budget (no interpolation, so every
  reported figure is one deterministic policy that was actually evaluated);
- ``normalised_area``: area under that step function over ``[0, max_cost]``, scaled so that the cheapest fixed
  policy's EM as a flat line scores 0 and the oracle's EM as a flat line scores 1.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from models.policy import Policy, decide_batch

FloatArray = npt.NDArray[np.float64]
KNOBS: FloatArray = np.concatenate([[0.0], np.geomspace(1e-4, 1.0, 160), [np.inf]])


def policy_choices(probabilities: FloatArray, policy: Policy, knob: float) -> npt.NDArray[np.intp]:
    """The policy's routes with its cost knob set to ``knob`` (thresholds unchanged)."""
    return decide_batch(probabilities, replace(policy, cost_weight=knob))


@dataclass(frozen=True)
class CurvePoint:
    knob: float
    mean_cost: float
    em: float


def sweep(
    probabilities: FloatArray, policy: Policy, em: FloatArray, cost: FloatArray, knobs: FloatArray = KNOBS
) -> list[CurvePoint]:
    rows = np.arange(len(em))
    points = []
    for lam in knobs:
        choices = policy_choices(probabilities, policy, float(lam))
        points.append(CurvePoint(float(lam), float(cost[rows, choices].mean()), float(em[rows, choices].mean())))
    return points


def frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (cost, em) points not dominated by a cheaper-or-equal point with higher-or-equal EM, by cost."""
    result: list[tuple[float, float]] = []
    for cost, em in sorted(points, key=lambda p: (p[0], -p[1])):
        if not result or em > result[-1][1]:
            result.append((cost, em))
    return result


def em_at_cost(points: list[tuple[float, float]], budget: float) -> float | None:
    """Best EM among points with mean cost <= budget (None when no point is that cheap)."""
    eligible = [em for cost, em in points if cost <= budget + 1e-12]
    return max(eligible) if eligible else None


def normalised_area(points: list[tuple[float, float]], floor_em: float, oracle_em: float, max_cost: float) -> float:
    """Area under the best-EM-at-or-under-cost step function over ``[0, max_cost]``, 0 = floor, 1 = oracle."""
    steps = frontier(points)
    area, previous_cost, previous_em = 0.0, 0.0, floor_em
    for cost, em in steps:
        if cost >= max_cost:
            break
        area += (cost - previous_cost) * previous_em
        previous_cost, previous_em = cost, max(em, floor_em)
    area += (max_cost - previous_cost) * previous_em
    return (area / max_cost - floor_em) / (oracle_em - floor_em)
