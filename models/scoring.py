"""Answer scoring as in SQuAD: lower-case, drop punctuation and the articles a/an/the, collapse whitespace; exact
match against any reference, and token F1 against the best reference."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalise(text: str) -> str:
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split())


def exact_match(prediction: str, references: Sequence[str]) -> float:
    answer = normalise(prediction)
    return float(any(answer == normalise(reference) for reference in references))


def token_f1(prediction: str, references: Sequence[str]) -> float:
    predicted = normalise(prediction).split()
    best = 0.0
    for reference in references:
        expected = normalise(reference).split()
        common = sum((Counter(predicted) & Counter(expected)).values())
        if not predicted or not expected:
            best = max(best, float(predicted == expected))
        elif common:
            precision, recall = common / len(predicted), common / len(expected)
            best = max(best, 2 * precision * recall / (precision + recall))
    return round(best, 4)
