from __future__ import annotations

import pytest

from models.scoring import exact_match, normalise, token_f1


def test_normalisation_follows_squad() -> None:
    assert normalise("The  Apostle Paul!") == "apostle paul"
    assert normalise("An apple, a day.") == "apple day"


@pytest.mark.parametrize(
    ("prediction", "references", "em", "f1"),
    [
        ("Paul", ["Paul"], 1.0, 1.0),
        ("the apostle Paul", ["Paul the Apostle"], 0.0, 1.0),  # same tokens, other order
        ("Paul the Apostle", ["Paul"], 0.0, 0.6667),  # precision 1/2, recall 1 -> 2/3
        ("in 1992", ["1992", "nineteen ninety-two"], 0.0, 0.6667),
        ("nineteen ninety-two", ["1992", "Nineteen ninety-two."], 1.0, 1.0),
        ("Rome", ["Paris"], 0.0, 0.0),
        ("", ["Paris"], 0.0, 0.0),
    ],
)
def test_exact_match_and_token_f1(prediction: str, references: list[str], em: float, f1: float) -> None:
    assert exact_match(prediction, references) == em
    assert token_f1(prediction, references) == f1
