"""Reference policies evaluated on the same questions as the router: fixed routes, random at a matched mix,
k-nearest-neighbours on embeddings, the published Adaptive-RAG router (decisions stored in the benchmark's test
rows), the oracle, and a dataset prior: a reference that knows each question's dataset, which a live query does not
carry, so it measures how much of a router's gain is recognising the dataset."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from models.metrics import routed_outcome
from models.outcomes import Outcomes
from models.routes import ROUTES

FloatArray = npt.NDArray[np.float64]
ADAPTIVE_RAG_ROUTE = {"A": 0, "B": 1, "C": 2}  # no retrieval / single-step / multi-step (IRCoT)
KNN_CANDIDATES = (10, 25, 50, 100, 200)


def routed_with_f1(choices: npt.NDArray[np.intp], outcomes: Outcomes) -> dict[str, Any]:
    """EM, mean cost and mix of taking ``choices``, plus their mean token F1."""
    f1 = round(float(outcomes.f1[np.arange(len(outcomes)), choices].mean()), 4)
    return routed_outcome(choices, outcomes.em, outcomes.cost) | {"f1": f1}


def fixed_route(outcomes: Outcomes, route: int) -> dict[str, Any]:
    return routed_with_f1(np.full(len(outcomes), route), outcomes)


def random_at_mix(outcomes: Outcomes, mix: dict[str, float]) -> dict[str, Any]:
    """Expected EM and cost of picking route r with probability mix[r], independently of the question."""
    weights = np.array([mix[route] for route in ROUTES])
    return {
        "em": round(float(outcomes.em.mean(axis=0) @ weights), 4),
        "mean_cost": round(float(outcomes.cost.mean(axis=0) @ weights), 4),
        "mix": mix,
    }


def oracle_choices(outcomes: Outcomes) -> npt.NDArray[np.intp]:
    """The cheapest correct route per question (the cheapest route when none is correct)."""
    order = np.argsort(outcomes.cost.mean(axis=0), kind="stable")
    correct = outcomes.em[:, order] > 0
    choices: npt.NDArray[np.intp] = np.where(correct.any(axis=1), order[np.argmax(correct, axis=1)], order[0])
    return choices


def oracle(outcomes: Outcomes) -> dict[str, Any]:
    """Routed outcome of ``oracle_choices``."""
    return routed_with_f1(oracle_choices(outcomes), outcomes)


def adaptive_rag_choices(outcomes: Outcomes) -> npt.NDArray[np.intp] | None:
    """The published router's decisions, or None when the rows do not carry them (e.g. dev rows)."""
    options = [row.get("adaptive_rag_option") for row in outcomes.rows]
    if any(option not in ADAPTIVE_RAG_ROUTE for option in options):
        return None
    return np.array([ADAPTIVE_RAG_ROUTE[str(option)] for option in options], dtype=np.intp)


def adaptive_rag(outcomes: Outcomes) -> dict[str, Any] | None:
    choices = adaptive_rag_choices(outcomes)
    if choices is None:
        return None
    return routed_with_f1(choices, outcomes)


def _neighbour_rates(similarity: FloatArray, train_em: FloatArray, k: int) -> FloatArray:
    nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    rates: FloatArray = train_em[nearest].mean(axis=1)
    return rates


def choose_knn_k(train_x: FloatArray, train_em: FloatArray) -> int:
    """k with the lowest leave-one-out Brier score on the training rows."""
    similarity = train_x @ train_x.T
    np.fill_diagonal(similarity, -np.inf)
    briers = {k: float(np.mean((_neighbour_rates(similarity, train_em, k) - train_em) ** 2)) for k in KNN_CANDIDATES}
    return min(briers, key=briers.__getitem__)


def knn_probabilities(train_x: FloatArray, train_em: FloatArray, test_x: FloatArray, k: int) -> FloatArray:
    """Per route, the success rate among the k most cosine-similar training questions."""
    return _neighbour_rates(test_x @ train_x.T, train_em, k)


def dataset_prior_probabilities(train: Outcomes, test: Outcomes) -> FloatArray | None:
    """Per route, the training rows' EM rate in the question's dataset (the overall rate for a dataset the training
    rows lack). None when the test rows do not name at least two datasets (a user's own outcomes usually name none).
    """
    if len(set(test.datasets) - {""}) < 2:
        return None
    overall = train.em.mean(axis=0)
    names = np.array(train.datasets)
    rates = {name: train.em[names == name].mean(axis=0) for name in set(train.datasets)}
    return np.array([rates.get(name, overall) for name in test.datasets], dtype=np.float64).reshape(len(test), -1)
