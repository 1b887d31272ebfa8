from __future__ import annotations

import numpy as np
import pytest

from models.policy import Thresholds, decide, decide_batch
from models.routes import ROUTES

THRESHOLDS = Thresholds(ft=0.6, rag=0.4, both=0.0)


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ({"ft": 0.7, "rag": 0.9, "both": 0.9}, "ft"),  # cheapest route that clears its threshold wins
        ({"ft": 0.5, "rag": 0.45, "both": 0.9}, "rag"),
        ({"ft": 0.5, "rag": 0.3, "both": 0.2}, "both"),  # both's threshold 0 makes it the catch-all
        ({"ft": 0.6, "rag": 0.0, "both": 0.0}, "ft"),  # the threshold itself clears
    ],
)
def test_cheapest_route_clearing_its_threshold(scores: dict[str, float], expected: str) -> None:
    assert decide(scores, THRESHOLDS) == expected


def test_no_route_clears_takes_most_likely_and_ties_go_cheaper() -> None:
    strict = Thresholds(ft=0.9, rag=0.9, both=0.9)
    assert decide({"ft": 0.2, "rag": 0.5, "both": 0.3}, strict) == "rag"
    assert decide({"ft": 0.5, "rag": 0.5, "both": 0.5}, strict) == "ft"


def test_batch_matches_single_decisions() -> None:
    rng = np.random.default_rng(7)
    probabilities = np.round(rng.random((2000, 3)), 2)
    for thresholds in (THRESHOLDS, Thresholds(0.3, 0.5, 0.7), Thresholds(1.0, 1.0, 1.0)):
        batch = decide_batch(probabilities, thresholds)
        single = [ROUTES.index(decide(dict(zip(ROUTES, row, strict=True)), thresholds)) for row in probabilities]
        assert batch.tolist() == single


def test_raising_ft_threshold_never_increases_ft_share() -> None:
    probabilities = np.random.default_rng(1).random((1000, 3))
    shares = [float((decide_batch(probabilities, Thresholds(t, 0.4, 0.0)) == 0).mean()) for t in np.linspace(0, 1, 11)]
    assert shares == sorted(shares, reverse=True)
    assert shares[0] == 1.0


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
