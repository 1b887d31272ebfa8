"""Every metric on small cases computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from models.baselines import dataset_prior_probabilities, oracle, random_at_mix
from models.curve import em_at_cost, frontier, normalised_area, policy_choices
from models.metrics import expected_calibration_error, probability_metrics, reliability, routed_outcome
from models.outcomes import Outcomes
from models.policy import Policy, Thresholds


def _outcomes(em: list[list[float]], cost: list[list[float]] | None = None) -> Outcomes:
    matrix = np.array(em, dtype=float)
    costs = np.array(cost if cost else [[0.0, 1.0, 3.0]] * len(em))
    return Outcomes([f"q{i}" for i in range(len(em))], matrix, matrix, costs, ["d"] * len(em), "x", [{}] * len(em))


def test_auroc_counts_correctly_ordered_pairs() -> None:
    # positives score 0.9 and 0.4, negatives 0.5 and 0.1: pairs (0.9>0.5, 0.9>0.1, 0.4<0.5, 0.4>0.1) -> 3/4
    p = np.array([[0.9, 0.9, 0.9], [0.4, 0.4, 0.4], [0.5, 0.5, 0.5], [0.1, 0.1, 0.1]])
    y = np.array([[1, 1, 1], [1, 1, 1], [0, 0, 0], [0, 0, 0]], dtype=float)
    assert probability_metrics(p, y)["ft"]["auroc"] == 0.75


def test_brier_and_expected_calibration_error() -> None:
    p = np.array([0.2, 0.2, 0.8, 0.8])
    y = np.array([0.0, 1.0, 1.0, 1.0])
    # bin [0.2,0.3): predicted 0.2, observed 0.5 -> 0.3; bin [0.8,0.9): predicted 0.8, observed 1.0 -> 0.2
    assert expected_calibration_error(p, y) == pytest.approx(0.5 * 0.3 + 0.5 * 0.2)
    metrics = probability_metrics(np.column_stack([p, p, p]), np.column_stack([y, y, y]))["rag"]
    assert metrics["brier"] == pytest.approx((0.04 + 0.64 + 0.04 + 0.04) / 4, abs=1e-4)
    assert reliability(p, y) == [
        {"low": 0.2, "high": 0.3, "mean_predicted": 0.2, "observed": 0.5, "count": 2},
        {"low": 0.8, "high": 0.9, "mean_predicted": 0.8, "observed": 1.0, "count": 2},
    ]


def test_routed_outcome_and_oracle_take_the_cheapest_correct_route() -> None:
    outcomes = _outcomes([[1, 1, 1], [0, 1, 1], [0, 0, 1], [0, 0, 0]])
    assert oracle(outcomes) == {"em": 0.75, "mean_cost": 1.0, "mix": {"ft": 0.5, "rag": 0.25, "both": 0.25}, "f1": 0.75}
    routed = routed_outcome(np.array([0, 0, 2, 1]), outcomes.em, outcomes.cost)
    assert routed == {"em": 0.5, "mean_cost": 1.0, "mix": {"ft": 0.5, "rag": 0.25, "both": 0.25}}


def test_random_at_matched_mix_is_the_expected_value() -> None:
    outcomes = _outcomes([[1, 0, 1], [0, 1, 1]])
    result = random_at_mix(outcomes, {"ft": 0.5, "rag": 0.5, "both": 0.0})
    assert result["em"] == 0.5 and result["mean_cost"] == 0.5


def test_the_dataset_prior_is_each_datasets_training_rate_per_route() -> None:
    train = _outcomes([[1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 1, 1]])
    train = Outcomes(train.questions, train.em, train.f1, train.cost, ["a", "a", "b", "c"], "x", train.rows)
    test = _outcomes([[0, 0, 0]] * 3)
    test = Outcomes(test.questions, test.em, test.f1, test.cost, ["b", "a", "unseen"], "x", test.rows)
    prior = dataset_prior_probabilities(train, test)
    assert prior is not None
    # b: its one row; a: the mean of its two rows; unseen: the mean of all four training rows
    assert prior.tolist() == [[1.0, 1.0, 0.0], [0.5, 0.0, 1.0], [0.5, 0.5, 0.75]]
    # rows that name one dataset (a user's own outcomes) get no prior
    assert dataset_prior_probabilities(train, _outcomes([[0, 0, 0]] * 3)) is None


def test_policy_choices_set_the_knob_and_break_ties_cheaply() -> None:
    p = np.array([[0.30, 0.40, 0.50], [0.5, 0.5, 0.5]])
    policy = Policy(Thresholds(), 0.0, (0.0, 1.0, 3.0))
    assert policy_choices(p, policy, 0.0).tolist() == [2, 0]
    assert policy_choices(p, policy, 0.05).tolist() == [1, 0]  # 0.30, 0.35, 0.35: rag ties both, rag is cheaper
    assert policy_choices(p, policy, 0.2).tolist() == [0, 0]
    assert policy_choices(p, policy, np.inf).tolist() == [0, 0]


def test_frontier_em_at_cost_and_normalised_area() -> None:
    points = [(0.0, 0.30), (0.5, 0.32), (0.8, 0.31), (1.0, 0.34), (2.0, 0.34)]
    assert frontier(points) == [(0.0, 0.30), (0.5, 0.32), (1.0, 0.34)]
    assert em_at_cost(points, 0.9) == 0.32
    assert em_at_cost(points, 1.0) == 0.34
    assert em_at_cost([(0.5, 0.3)], 0.1) is None
    # step function over [0, 2]: 0.30 on [0, 0.5), 0.32 on [0.5, 1), 0.34 on [1, 2] -> mean 0.325
    # normalised between floor 0.30 and oracle 0.40: (0.325 - 0.30) / 0.10 = 0.25
    assert normalised_area(points, 0.30, 0.40, 2.0) == pytest.approx(0.25)
    assert normalised_area([(0.0, 0.40)], 0.30, 0.40, 2.0) == pytest.approx(1.0)
    assert normalised_area([(0.0, 0.30)], 0.30, 0.40, 2.0) == pytest.approx(0.0)


def test_the_curve_area_spans_the_dearest_fixed_policy_mean_cost() -> None:
    from models.evaluation import curve_summary

    # both costs 2 and 6 retrieval calls: always-both costs 4 on average, which is where the area ends
    data = _outcomes([[0, 1, 1], [1, 1, 1]], [[0.0, 1.0, 2.0], [0.0, 1.0, 6.0]])
    policy = Policy(Thresholds(0.0, 0.0, 0.0), 0.0, (0.0, 1.0, 3.35))
    summary = curve_summary(np.array([[0.2, 0.9, 0.8], [0.9, 0.5, 0.5]]), policy, data, floor=0.5, top=1.0)
    assert summary["max_cost"] == 4.0
