from __future__ import annotations

import numpy as np
import pytest

from models.policy import Policy, Thresholds, decide, decide_batch
from models.routes import ROUTES

COSTS = (0.0, 1.0, 3.0)


@pytest.mark.parametrize(
    ("scores", "cost_weight", "expected"),
    [
        ({"ft": 0.30, "rag": 0.40, "both": 0.50}, 0.0, "both"),  # knob at 0: the most likely route
        ({"ft": 0.30, "rag": 0.40, "both": 0.50}, 0.06, "rag"),  # utilities 0.30, 0.34, 0.32
        ({"ft": 0.30, "rag": 0.40, "both": 0.50}, 0.2, "ft"),  # 0.30, 0.20, -0.10
        ({"ft": 0.50, "rag": 0.50, "both": 0.50}, 0.0, "ft"),  # ties go to the cheaper route
    ],
)
def test_cost_weight_trades_success_probability_for_retrieval_calls(
    scores: dict[str, float], cost_weight: float, expected: str
) -> None:
    assert decide(scores, Policy(Thresholds(), cost_weight, COSTS)) == expected


def test_thresholds_are_floors_for_eligibility() -> None:
    scores = {"ft": 0.55, "rag": 0.45, "both": 0.60}
    assert decide(scores, Policy(Thresholds(), 0.0, COSTS)) == "both"
    assert decide(scores, Policy(Thresholds(both=0.7), 0.0, COSTS)) == "ft"  # both is not eligible
    assert decide(scores, Policy(Thresholds(ft=0.6, both=0.7), 0.0, COSTS)) == "rag"
    # nothing eligible: every route is considered again
    assert decide(scores, Policy(Thresholds(0.9, 0.9, 0.9), 0.0, COSTS)) == "both"


def test_infinite_cost_weight_takes_the_cheapest_route_clearing_its_threshold() -> None:
    policy = Policy(Thresholds(ft=0.6, rag=0.4, both=0.0), float("inf"), COSTS)
    assert decide({"ft": 0.7, "rag": 0.9, "both": 0.9}, policy) == "ft"
    assert decide({"ft": 0.5, "rag": 0.45, "both": 0.9}, policy) == "rag"
    assert decide({"ft": 0.5, "rag": 0.3, "both": 0.2}, policy) == "both"


def test_batch_matches_single_decisions() -> None:
    rng = np.random.default_rng(7)
    probabilities = np.round(rng.random((1000, 3)), 2)
    policies = [
        Policy(Thresholds(), 0.05, COSTS),
        Policy(Thresholds(0.3, 0.5, 0.7), 0.01, COSTS),
        Policy(Thresholds(1.0, 1.0, 1.0), float("inf"), COSTS),
    ]
    for policy in policies:
        batch = decide_batch(probabilities, policy)
        single = [ROUTES.index(decide(dict(zip(ROUTES, row, strict=True)), policy)) for row in probabilities]
        assert batch.tolist() == single


def test_raising_the_cost_weight_never_raises_the_mean_cost() -> None:
    probabilities = np.random.default_rng(1).random((2000, 3))
    costs = np.array(COSTS)
    spent = [costs[decide_batch(probabilities, Policy(Thresholds(), w, COSTS))].mean() for w in np.linspace(0, 1.0, 26)]
    assert spent == sorted(spent, reverse=True)
    assert spent[-1] == 0.0


@pytest.mark.parametrize(
    "bad",
    [
        {"ft": 1.5, "rag": 0.1, "both": 0},
        {"ft": -0.1, "rag": 0.1, "both": 0},
        {"ft": float("nan"), "rag": 0.1, "both": 0},
    ],
)
def test_thresholds_outside_unit_interval_are_rejected(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="within"):
        Thresholds.from_mapping(bad)


def test_thresholds_need_exactly_the_known_routes() -> None:
    with pytest.raises(ValueError, match="unknown"):
        Thresholds.from_mapping({"ft": 0.1, "rag": 0.1, "both": 0.1, "web": 0.2})
    with pytest.raises(ValueError, match="missing"):
        Thresholds.from_mapping({"ft": 0.1, "rag": 0.1})


@pytest.mark.parametrize("weight", [-0.1, 11.0, float("nan")])
def test_cost_weight_out_of_range_is_rejected(weight: float) -> None:
    with pytest.raises(ValueError, match="cost_weight"):
        Policy(Thresholds(), weight, COSTS)


def test_the_readme_worked_example() -> None:
    costs = (0.0, 1.0, 3.35)
    assert decide({"ft": 0.52, "rag": 0.50, "both": 0.58}, Policy(Thresholds(), 0.03, costs)) == "ft"
    assert decide({"ft": 0.20, "rag": 0.35, "both": 0.40}, Policy(Thresholds(), 0.03, costs)) == "rag"
    assert decide({"ft": 0.20, "rag": 0.35, "both": 0.40}, Policy(Thresholds(), 0.01, costs)) == "both"
    assert decide({"ft": 0.20, "rag": 0.35, "both": 0.40}, Policy(Thresholds(rag=0.4), 0.03, costs)) == "both"
