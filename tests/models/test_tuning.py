"""Expected mix and calibration to a target mix, on synthetic score distributions with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from models.policy import Policy, Thresholds
from models.tuning import Labels, calibrate, expected, target_vector

TOLERANCE = 0.04  # L1 distance between the calibrated mix and the target: 2 points on each of two routes


def scores(n: int = 1_000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.beta(2, 3, size=(n, 1))
    lift = rng.uniform(0.0, 0.25, size=(n, 2))  # retrieval helps, by varying amounts
    return np.clip(np.hstack([base, base + lift]), 0, 1)


def test_expected_counts_the_policy_choices() -> None:
    p = np.array([[0.9, 0.2, 0.2], [0.1, 0.8, 0.7], [0.1, 0.5, 0.9], [0.6, 0.6, 0.6]])
    result = expected(p, Policy(cost_weight=0.0))
    assert result.mix == {"ft": 0.5, "rag": 0.25, "both": 0.25}  # the tie at 0.6 goes to the cheapest, ft
    assert result.success == pytest.approx((0.9 + 0.8 + 0.9 + 0.6) / 4, abs=1e-4)
    assert result.cost == pytest.approx((0 + 1 + 3.35 + 0) / 4, abs=1e-4)
    assert result.queries == 4 and result.em is None


def test_labels_give_the_measured_em_and_cost_of_the_routes_taken() -> None:
    p = np.array([[0.9, 0.2, 0.2], [0.1, 0.8, 0.7], [0.1, 0.5, 0.9], [0.6, 0.6, 0.6]])
    em = np.array([[1, 0, 0], [0, 0, 1], [0, 1, 1], [0, 1, 1]], dtype=float)  # chosen: ft, rag, both, ft
    cost = np.array([[0, 1, 2], [0, 1, 5], [0, 1, 4], [0, 1, 3]], dtype=float)
    result = expected(p, Policy(cost_weight=0.0), Labels(em, cost))
    assert result.em == pytest.approx((1 + 0 + 1 + 0) / 4) and result.cost == pytest.approx((0 + 1 + 4 + 0) / 4)
    labels = Labels(np.ones((1_000, 3)), np.tile([0.0, 1.0, 3.0], (1_000, 1)))
    found = calibrate(scores(), {"rag": 0.3, "both": 0.1}, Policy(), labels).expectation
    assert found.em == 1.0 and found.cost == pytest.approx(found.mix["rag"] + 3 * found.mix["both"], abs=1e-3)
    with pytest.raises(ValueError, match="shape"):
        expected(p, Policy(), Labels(em[:2], cost[:2]))


@pytest.mark.parametrize(
    "target", [{"rag": 0.3, "both": 0.1}, {"rag": 0.5, "both": 0.3}, {"ft": 0.9}, {"ft": 0.2, "rag": 0.2, "both": 0.6}]
)
def test_calibrated_mix_lands_within_tolerance_of_the_target(target: dict[str, float]) -> None:
    p = scores()
    proposal = calibrate(p, target, Policy())
    wanted = dict(zip(("ft", "rag", "both"), target_vector(target), strict=True))
    assert proposal.distance <= TOLERANCE, (proposal.expectation.mix, wanted)
    assert sum(abs(proposal.expectation.mix[r] - wanted[r]) for r in wanted) == pytest.approx(
        proposal.distance, abs=1e-3
    )
    held_out = expected(scores(seed=1), proposal.policy)  # same distribution, new queries: the mix holds
    assert sum(abs(held_out.mix[r] - wanted[r]) for r in wanted) <= 2 * TOLERANCE + 0.03


def test_a_mix_produced_by_a_known_policy_is_recovered() -> None:
    p = scores()
    known = Policy(Thresholds(both=0.55), cost_weight=0.05)
    proposal = calibrate(p, expected(p, known).mix, Policy())
    assert proposal.distance <= 0.01


def test_calibration_moves_at_most_one_floor_and_keeps_ft() -> None:
    proposal = calibrate(scores(), {"rag": 0.3}, Policy(Thresholds(ft=0.2, rag=0.1, both=0.05)))
    thresholds = proposal.policy.thresholds
    assert thresholds.ft == 0.2 and (thresholds.rag == 0.1 or thresholds.both == 0.05)


@pytest.mark.parametrize(
    ("target", "message"),
    [({"fast": 0.5}, "unknown routes"), ({"rag": 0.8, "both": 0.4}, "sum to"), ({"rag": -0.1}, "within"),
     ({"ft": 0.5, "rag": 0.2, "both": 0.2}, "sum to")],
)  # fmt: skip
def test_bad_targets_are_refused(target: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        calibrate(scores(100), target, Policy())
