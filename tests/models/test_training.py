from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from models.embedder import Embedder
from models.features import SHAPE_DIMENSION
from models.outcomes import Outcomes, load_outcomes
from models.training import TrainOptions, fit_calibrator, fit_classifiers, train


@pytest.fixture(scope="module")
def dev(outcomes_path: Path) -> Outcomes:
    return load_outcomes(outcomes_path, "dev_500")


@pytest.fixture(scope="module")
def dev_embeddings(dev: Outcomes, embedder: Embedder) -> np.ndarray:
    return embedder.encode(dev.questions).astype(np.float64)


def test_outcomes_map_strategies_to_routes(dev: Outcomes) -> None:
    row = dev.rows[0]
    assert dev.em[0].tolist() == [row["em_zero"], row["em_single"], row["em_multi"]]
    assert dev.cost[0].tolist() == [0.0, 1.0, 3.35]  # dev rows have no ircot_steps: the benchmark mean
    assert len(dev) == 300 and set(dev.datasets) == {"nq", "trivia", "squad", "musique", "hotpotqa", "2wikimultihopqa"}


def test_sigmoid_calibrator_equals_scikit_learn_platt_scaling() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=400)
    outcomes = (rng.random(400) < 1 / (1 + np.exp(-2 * scores))).astype(float)
    platt = LogisticRegression(C=1e6, max_iter=1000).fit(scores.reshape(-1, 1), outcomes)
    ours = fit_calibrator(scores, outcomes, "sigmoid")
    np.testing.assert_allclose(ours(scores), platt.predict_proba(scores.reshape(-1, 1))[:, 1], atol=1e-9)


def test_isotonic_calibrator_equals_scikit_learn_and_clips_outside_the_range() -> None:
    rng = np.random.default_rng(1)
    scores = rng.normal(size=400)
    outcomes = (rng.random(400) < 1 / (1 + np.exp(-scores))).astype(float)
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(scores, outcomes)
    ours = fit_calibrator(scores, outcomes, "isotonic")
    probe = np.linspace(-6, 6, 101)
    np.testing.assert_allclose(ours(probe), iso.predict(probe), atol=1e-12)


def test_numpy_inference_equals_scikit_learn_models(dev: Outcomes, dev_embeddings: np.ndarray) -> None:
    classifier = fit_classifiers(dev_embeddings, dev.questions, dev.em, TrainOptions(folds=3))["sigmoid"]
    assert classifier.shape is not None and classifier.dimension == 384
    features = np.hstack([dev_embeddings, classifier.shape(dev.questions)])
    assert features.shape == (300, 384 + SHAPE_DIMENSION)
    np.testing.assert_allclose(classifier.shape(dev.questions).mean(axis=0), 0, atol=1e-9)  # fitted on these rows
    probabilities = classifier.predict_proba(dev_embeddings, dev.questions)
    for i, calibrator in enumerate(classifier.calibrators):
        scores = features @ classifier.weights[i] + classifier.biases[i]
        np.testing.assert_allclose(classifier.decision_function(dev_embeddings, dev.questions)[:, i], scores)
        np.testing.assert_allclose(probabilities[:, i], calibrator(scores))
    with pytest.raises(ValueError, match="one question per embedding"):
        classifier.predict_proba(dev_embeddings)


def test_training_reports_calibrated_out_of_fold_probabilities(dev: Outcomes, dev_embeddings: np.ndarray) -> None:
    result = train(dev, dev_embeddings, TrainOptions(folds=3))
    metrics = result.metrics
    assert result.calibration in {"sigmoid", "isotonic"}
    for route, values in metrics["routes"].items():
        # calibrated: on average the predicted success rate matches the observed one
        assert abs(values["mean_predicted"] - values["base_rate"]) < 0.05, route
        assert values["brier"] <= values["base_rate"] * (1 - values["base_rate"]) + 0.02, route
        assert values["ece"] < 0.15, route
    assert 0 <= metrics["routed"]["em"] <= metrics["oracle_em"]
    assert sum(metrics["routed"]["mix"].values()) == pytest.approx(1.0, abs=1e-3)


def test_a_route_that_is_never_right_cannot_be_trained(dev: Outcomes, dev_embeddings: np.ndarray) -> None:
    em = dev.em.copy()
    em[:, 0] = 0
    with pytest.raises(ValueError, match="nothing to learn"):
        fit_classifiers(dev_embeddings, dev.questions, em, TrainOptions(folds=3))


def test_cost_mapping_uses_ircot_steps_where_present(outcomes_path: Path) -> None:
    test = load_outcomes(outcomes_path, "test")
    steps = [row["ircot_steps"] for row in test.rows]
    assert test.cost[:, 0].tolist() == [0.0] * len(test)
    assert test.cost[:, 1].tolist() == [1.0] * len(test)
    assert test.cost[:, 2].tolist() == [float(s) for s in steps]
