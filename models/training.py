"""Training the route classifier from labelled outcomes, with honest (out-of-fold) metrics.

Per route, a logistic regression over the query embedding; its regularisation ``C`` is chosen by inner
cross-validation on log loss, and its calibrator is fitted on inner out-of-fold decision scores (so the calibrator
never sees scores of questions the linear model was trained on). The reported metrics come from an outer
cross-validation around that whole procedure. With ``calibration="auto"`` the calibrator (sigmoid or isotonic)
with the lower out-of-fold Brier score is kept. The default policy (thresholds 0, see ``models.policy``) gets the
cost knob value with the best out-of-fold EM within a mean-cost budget (``max_cost``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from models.bundle import Bundle, save_bundle
from models.classifier import CalibrationMethod, Calibrator, RouteClassifier, ShapeScaler
from models.curve import em_at_cost, sweep
from models.embedder import Embedder
from models.metrics import probability_metrics, routed_outcome
from models.outcomes import Outcomes
from models.policy import Policy, Thresholds, decide_batch
from models.reference import build_reference
from models.routes import ROUTES

FloatArray = npt.NDArray[np.float64]
METHODS: tuple[CalibrationMethod, ...] = ("sigmoid", "isotonic")
C_GRID = (0.1, 0.3, 1.0, 3.0, 10.0)


@dataclass(frozen=True)
class TrainOptions:
    calibration: Literal["auto", "sigmoid", "isotonic"] = "auto"
    folds: int = 5
    features: Literal["embedding", "embedding+shape"] = "embedding+shape"
    max_cost: float = 1.0
    """Budget for the default policy: the cost knob is set for the best out-of-fold EM within this mean cost."""
    seed: int = 0


@dataclass
class TrainResult:
    classifier: RouteClassifier
    policy: Policy
    calibration: CalibrationMethod
    metrics: dict[str, Any] = field(default_factory=dict)


def fit_calibrator(scores: FloatArray, outcomes: FloatArray, method: CalibrationMethod) -> Calibrator:
    if method == "sigmoid":
        platt = LogisticRegression(C=1e6, max_iter=1000).fit(scores.reshape(-1, 1), outcomes)
        params = np.array([platt.coef_[0, 0], platt.intercept_[0]])
        return Calibrator("sigmoid", params, np.zeros(0))
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(scores, outcomes)
    return Calibrator("isotonic", np.asarray(iso.X_thresholds_, float), np.asarray(iso.y_thresholds_, float))


def _folds(outcomes: FloatArray, folds: int, seed: int) -> StratifiedKFold | KFold:
    smallest_class = int(min(outcomes.sum(), len(outcomes) - outcomes.sum()))
    if smallest_class >= folds:
        return StratifiedKFold(folds, shuffle=True, random_state=seed)
    return KFold(folds, shuffle=True, random_state=seed)


def _fit_head(x: FloatArray, y: FloatArray, folds: int, seed: int) -> tuple[LogisticRegression, dict[str, Calibrator]]:
    """One route's linear model on all of ``x`` and a calibrator of each method fitted on its inner OOF scores."""
    if y.min() == y.max():
        raise ValueError("a route is always right or always wrong in the training rows; nothing to learn")
    inner = _folds(y, folds, seed)
    search = LogisticRegressionCV(
        Cs=list(C_GRID), l1_ratios=(0.0,), cv=inner, scoring="neg_log_loss", max_iter=2000, use_legacy_attributes=False
    ).fit(x, y)
    model = LogisticRegression(C=float(search.C_), max_iter=2000)
    scores = cross_val_predict(model, x, y, cv=inner, method="decision_function")
    model.fit(x, y)
    return model, {method: fit_calibrator(scores, y, method) for method in METHODS}


def fit_classifiers(
    embeddings: FloatArray, questions: Sequence[str], em: FloatArray, options: TrainOptions
) -> dict[CalibrationMethod, RouteClassifier]:
    """A classifier per calibration method; the linear heads are shared, only the calibrators differ. Everything,
    the shape features' scaling included, is fitted on these rows only."""
    shape = ShapeScaler.fit(questions) if options.features == "embedding+shape" else None
    x = RouteClassifier.features_of(embeddings, questions, shape)
    with threadpool_limits(limits=1):  # multi-threaded BLAS makes these small fits 15-40x slower on 2 cores
        heads = [_fit_head(x, em[:, i], options.folds, options.seed) for i in range(len(ROUTES))]
    weights = np.vstack([model.coef_[0] for model, _ in heads])
    biases = np.array([model.intercept_[0] for model, _ in heads])
    return {m: RouteClassifier(weights, biases, tuple(cal[m] for _, cal in heads), shape) for m in METHODS}


def out_of_fold_probabilities(
    embeddings: FloatArray, questions: Sequence[str], em: FloatArray, options: TrainOptions, progress: bool = False
) -> dict[CalibrationMethod, FloatArray]:
    """Outer cross-validation of the whole fitting procedure: honest probabilities for every row."""
    oof = {method: np.zeros_like(em) for method in METHODS}
    splits = KFold(options.folds, shuffle=True, random_state=options.seed).split(embeddings)
    for train, test in tqdm(list(splits), desc="cross-validating", disable=not progress, unit="fold"):
        fitted = fit_classifiers(embeddings[train], [questions[i] for i in train], em[train], options)
        for method, classifier in fitted.items():
            oof[method][test] = classifier.predict_proba(embeddings[test], [questions[i] for i in test])
    return oof


def select_cost_weight(
    probabilities: FloatArray, policy: Policy, em: FloatArray, cost: FloatArray, max_cost: float
) -> float:
    """The knob value giving the highest EM among those whose mean cost stays within ``max_cost`` on these rows."""
    points = [p for p in sweep(probabilities, policy, em, cost) if p.mean_cost <= max_cost + 1e-12]
    return max(points, key=lambda p: (p.em, p.knob)).knob if points else float("inf")


def train(outcomes: Outcomes, embeddings: FloatArray, options: TrainOptions, progress: bool = False) -> TrainResult:
    """Fits the classifier on every row and reports out-of-fold metrics, baselines and the default policy."""
    oof = out_of_fold_probabilities(embeddings, outcomes.questions, outcomes.em, options, progress)
    briers = {m: float(np.mean((oof[m] - outcomes.em) ** 2)) for m in METHODS}
    method: CalibrationMethod = (
        min(briers, key=briers.__getitem__) if options.calibration == "auto" else options.calibration
    )
    costs = tuple(float(np.median(outcomes.cost[:, i])) for i in range(len(ROUTES)))
    policy = Policy(Thresholds(), 0.0, costs)
    policy = replace(
        policy, cost_weight=select_cost_weight(oof[method], policy, outcomes.em, outcomes.cost, options.max_cost)
    )
    classifier = fit_classifiers(embeddings, outcomes.questions, outcomes.em, options)[method]
    n = len(outcomes)
    fixed = {route: routed_outcome(np.full(n, i), outcomes.em, outcomes.cost) for i, route in enumerate(ROUTES)}
    curve = [(p.mean_cost, p.em) for p in sweep(oof[method], policy, outcomes.em, outcomes.cost)]
    metrics = {
        "evaluation": f"{options.folds}-fold out-of-fold on the training rows",
        "rows": n,
        "brier_by_calibration": {m: round(b, 4) for m, b in briers.items()},
        "routes": probability_metrics(oof[method], outcomes.em),
        "routed": routed_outcome(decide_batch(oof[method], policy), outcomes.em, outcomes.cost),
        "em_at_cost": {
            str(b): round(v, 4) if (v := em_at_cost(curve, b)) is not None else None for b in (0.5, 1.0, 1.85)
        },
        "fixed_routes": fixed,
        "oracle_em": round(float(outcomes.em.max(axis=1).mean()), 4),
    }
    return TrainResult(classifier=classifier, policy=policy, calibration=method, metrics=metrics)


Fitter = Callable[[FloatArray, Sequence[str], FloatArray], RouteClassifier]


def fitter(bundle: Bundle) -> Fitter:
    """Retrains a classifier the way ``bundle`` was trained (its options and calibration), on other rows."""
    options = TrainOptions(**bundle.manifest["training"]["options"])
    method: CalibrationMethod = bundle.manifest["calibration"]

    def fit(embeddings: FloatArray, questions: Sequence[str], em: FloatArray) -> RouteClassifier:
        return fit_classifiers(embeddings, questions, em, options)[method]

    return fit


def train_bundle(
    outcomes: Outcomes, split: str, embedder: Embedder, directory: Path, options: TrainOptions, progress: bool = False
) -> tuple[Bundle, Policy]:
    """Embeds the questions, trains, and writes a bundle (classifier, manifest, default thresholds)."""
    embeddings = embedder.encode(outcomes.questions, progress=progress).astype(np.float64)
    result = train(outcomes, embeddings, options, progress)
    manifest_fields = {
        "embedder": {"name": embedder.name, "dimension": embedder.dimension},
        "calibration": result.calibration,
        "costs": dict(zip(ROUTES, result.policy.costs, strict=True)),
        "training": {
            "data_sha256": outcomes.source_sha256,
            "split": split,
            "rows": len(outcomes),
            "options": asdict(options),
            "features": options.features,
        },
        "metrics": result.metrics,
    }
    scores = result.classifier.predict_proba(embeddings, outcomes.questions)
    reference = build_reference(outcomes.questions, embeddings, outcomes.em, scores)
    bundle = save_bundle(
        directory, result.classifier, result.policy.thresholds, result.policy.cost_weight, manifest_fields, reference
    )
    return bundle, result.policy
