"""``router eval``: a bundle on labelled outcomes, against baselines, with intervals and out-of-domain checks.

Sections of the report (all computed on the same questions in one run):

- ``routed``: the router at its configured policy (thresholds and cost knob): EM, F1, mean retrieval calls, mix;
- ``curve``: the policy swept over its cost knob (see ``models.curve``): EM at mean cost 0.5 / 1.0 / 1.85 and the
  normalised area;
- ``calibration``: per route AUROC, Brier, ECE and a reliability table;
- ``baselines``: fixed routes, random at the router's mix, kNN on embeddings (trained on the training split,
  k by leave-one-out), Adaptive-RAG (when the rows carry its decisions), oracle, and the dataset prior (each
  dataset's route EM rates on the training split: it knows the dataset, which a live query does not, so it is a
  reference for how much of the router's gain is recognising the dataset, not a deployable router);
- ``ci``: bootstrap 95% intervals (questions resampled) and paired differences against Adaptive-RAG;
- ``per_dataset`` and ``lodo`` (leave one dataset out: retrain on the other datasets' training rows);
- ``robustness`` (with a ``Probe``): the decisions on perturbed questions (see ``models.robustness``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from models.baselines import (
    adaptive_rag,
    adaptive_rag_choices,
    choose_knn_k,
    dataset_prior_probabilities,
    fixed_route,
    knn_probabilities,
    oracle,
    random_at_mix,
    routed_with_f1,
)
from models.bundle import Bundle
from models.classifier import RouteClassifier
from models.curve import KNOBS, em_at_cost, normalised_area, policy_choices, sweep
from models.metrics import probability_metrics
from models.outcomes import Outcomes
from models.policy import Policy, decide_batch
from models.robustness import Decisions, Probe, measure
from models.routes import ROUTES
from models.training import Fitter

FloatArray = npt.NDArray[np.float64]
BUDGETS = (0.5, 1.0, 1.85)


@dataclass(frozen=True)
class EvalData:
    test: Outcomes
    test_x: FloatArray
    train: Outcomes
    train_x: FloatArray


def route(
    classifier: RouteClassifier, policy: Policy, x: FloatArray, questions: Sequence[str]
) -> tuple[FloatArray, npt.NDArray[np.intp]]:
    """Calibrated probabilities and the policy's route indices: the decision as the service takes it."""
    probabilities = classifier.predict_proba(x, questions)
    return probabilities, decide_batch(probabilities, policy)


def curve_summary(
    probabilities: FloatArray, policy: Policy, outcomes: Outcomes, floor: float, top: float
) -> dict[str, Any]:
    points = sweep(probabilities, policy, outcomes.em, outcomes.cost)
    pairs = [(p.mean_cost, p.em) for p in points]
    max_cost = float(outcomes.cost.max(axis=1).mean()) if len(outcomes) else 0.0  # the dearest fixed policy
    return {
        "points": [{"knob": p.knob, "mean_cost": round(p.mean_cost, 4), "em": round(p.em, 4)} for p in points],
        "em_at_cost": {str(b): _round(em_at_cost(pairs, b)) for b in BUDGETS},
        "normalised_area": round(normalised_area(pairs, floor, top, max_cost), 4),
        "max_cost": round(max_cost, 4),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def baselines(data: EvalData, policy: Policy, mix: dict[str, float]) -> dict[str, Any]:
    """The kNN baseline and the dataset prior are swept with the router's policy (same thresholds and costs) over
    their rates."""
    test = data.test
    report: dict[str, Any] = {f"always_{r}": fixed_route(test, i) for i, r in enumerate(ROUTES)}
    report["random_matched_mix"] = random_at_mix(test, mix)
    k = choose_knn_k(data.train_x, data.train.em)
    knn = knn_probabilities(data.train_x, data.train.em, data.test_x, k)
    floor, top = report["always_ft"]["em"], oracle(test)["em"]
    report["knn"] = {"k": k, "curve": curve_summary(knn, policy, test, floor, top)}
    prior = dataset_prior_probabilities(data.train, test)
    report["dataset_prior"] = None if prior is None else {"curve": curve_summary(prior, policy, test, floor, top)}
    report["adaptive_rag"] = adaptive_rag(test)
    report["oracle"] = oracle(test)
    return report


def bootstrap(
    data: EvalData,
    routed: npt.NDArray[np.intp],
    probabilities: FloatArray,
    policy: Policy,
    resamples: int,
    seed: int,
) -> dict[str, Any]:
    """Percentile 95% intervals over question resamples; differences are paired (same resample for both)."""
    test, n = data.test, len(data.test)
    rng = np.random.default_rng(seed)
    weights = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(resamples)], axis=1) / n
    rows = np.arange(n)
    choice_sets = [policy_choices(probabilities, policy, float(lam)) for lam in KNOBS]
    curve_em = np.stack([test.em[rows, c] for c in choice_sets]) @ weights
    curve_cost = np.stack([test.cost[rows, c] for c in choice_sets]) @ weights
    at_one = np.where(curve_cost <= 1.0 + 1e-12, curve_em, -np.inf).max(axis=0)
    samples = {
        "routed_em": test.em[rows, routed] @ weights,
        "routed_mean_cost": test.cost[rows, routed] @ weights,
        "em_at_cost_1.0": at_one,
    }
    report: dict[str, Any] = {"method": f"bootstrap, {resamples} resamples of the questions, 95% percentile"}
    report |= {name: _interval(values) for name, values in samples.items()}
    published = adaptive_rag_choices(test)
    if published is not None:
        theirs = test.em[rows, published] @ weights
        report["adaptive_rag_em"] = _interval(theirs)
        report["paired_vs_adaptive_rag"] = {
            "routed_em_minus_adaptive_rag_em": _difference(samples["routed_em"] - theirs),
            "em_at_cost_1.0_minus_adaptive_rag_em": _difference(at_one - theirs),
        }
    return report


def _interval(values: FloatArray) -> list[float]:
    low, high = np.percentile(values, [2.5, 97.5])
    return [round(float(low), 4), round(float(high), 4)]


def _difference(values: FloatArray) -> dict[str, Any]:
    return {
        "mean": round(float(values.mean()), 4),
        "ci": _interval(values),
        "share_of_resamples_not_better": round(float((values <= 0).mean()), 4),
    }


def per_dataset(data: EvalData, routed: npt.NDArray[np.intp]) -> dict[str, Any]:
    report = {}
    for name in sorted(set(data.test.datasets)):
        mask = np.array([d == name for d in data.test.datasets])
        subset = data.test.subset(mask)
        report[name] = {
            "rows": len(subset),
            "routed": routed_with_f1(routed[mask], subset),
            **{f"always_{r}": fixed_route(subset, i)["em"] for i, r in enumerate(ROUTES)},
            "adaptive_rag": adaptive_rag(subset),
            "oracle_em": oracle(subset)["em"],
        }
    return report


def leave_one_dataset_out(
    data: EvalData, fit: Fitter, policy: Policy, in_domain: npt.NDArray[np.intp], progress: bool
) -> dict[str, Any]:
    """Retrain without one dataset's training rows, then route that dataset's test rows."""
    report = {}
    names = sorted(set(data.test.datasets))
    for name in tqdm(names, desc="leave-one-dataset-out", unit="dataset", disable=not progress):
        train_mask = np.array([d != name for d in data.train.datasets])
        test_mask = np.array([d == name for d in data.test.datasets])
        train = data.train.subset(train_mask)
        classifier = fit(data.train_x[train_mask], train.questions, train.em)
        subset = data.test.subset(test_mask)
        _, choices = route(classifier, policy, data.test_x[test_mask], subset.questions)
        report[name] = {
            "rows": len(subset),
            "held_out": routed_with_f1(choices, subset),
            "in_domain": routed_with_f1(in_domain[test_mask], subset),
            "always_ft_em": fixed_route(subset, 0)["em"],
            "best_fixed_em": max(fixed_route(subset, i)["em"] for i in range(len(ROUTES))),
        }
    return report


def evaluate(
    bundle: Bundle,
    policy: Policy,
    data: EvalData,
    *,
    fit: Fitter | None = None,
    resamples: int = 1000,
    seed: int = 0,
    progress: bool = False,
    probe: Probe | None = None,
) -> dict[str, Any]:
    """The whole report; ``fit`` (a trainer with the bundle's options) enables the leave-one-dataset-out section,
    ``probe`` (the embedder and a sample size) the robustness section."""
    test = data.test
    probabilities, choices = route(bundle.classifier, policy, data.test_x, test.questions)
    routed = routed_with_f1(choices, test)
    report: dict[str, Any] = {
        "model_version": bundle.version,
        "rows": len(test),
        "thresholds": policy.thresholds.as_dict(),
        "cost_weight": policy.cost_weight,
        "routed": routed,
        "calibration": probability_metrics(probabilities, test.em),
        "baselines": baselines(data, policy, routed["mix"]),
    }
    floor, top = report["baselines"]["always_ft"]["em"], report["baselines"]["oracle"]["em"]
    report["curve"] = curve_summary(probabilities, policy, test, floor, top)
    report["ci"] = bootstrap(data, choices, probabilities, policy, resamples, seed)
    report["per_dataset"] = per_dataset(data, choices)
    if fit is not None:
        report["lodo"] = leave_one_dataset_out(data, fit, policy, choices, progress)
    if probe is not None:
        decide = partial(route, bundle.classifier, policy)
        report["robustness"] = measure(test, data.test_x, Decisions(probabilities, choices), decide, probe)
    return report
