"""Quality measures for route probabilities and for routing decisions, shared by training and evaluation."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import roc_auc_score

from models.routes import ROUTES

FloatArray = npt.NDArray[np.float64]


def expected_calibration_error(probabilities: FloatArray, outcomes: FloatArray, bins: int = 10) -> float:
    """Mean |observed rate - predicted probability| over equal-width bins, weighted by bin size."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.sum() * abs(outcomes[members].mean() - probabilities[members].mean())
    return float(total / len(probabilities))


def probability_metrics(probabilities: FloatArray, outcomes: FloatArray) -> dict[str, dict[str, Any]]:
    """Per route: AUROC, Brier score, expected calibration error, mean prediction and base rate."""
    report: dict[str, dict[str, Any]] = {}
    for i, route in enumerate(ROUTES):
        p, y = probabilities[:, i], outcomes[:, i]
        auroc = float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")
        report[route] = {
            "auroc": round(auroc, 4),
            "brier": round(float(np.mean((p - y) ** 2)), 4),
            "ece": round(expected_calibration_error(p, y), 4),
            "mean_predicted": round(float(p.mean()), 4),
            "base_rate": round(float(y.mean()), 4),
            "reliability": reliability(p, y),
        }
    return report


def routed_outcome(choices: npt.NDArray[np.intp], em: FloatArray, cost: FloatArray) -> dict[str, object]:
    """EM, mean cost and route mix of taking route ``choices[i]`` for question ``i``."""
    rows = np.arange(len(choices))
    counts = np.bincount(choices, minlength=len(ROUTES))
    return {
        "em": round(float(em[rows, choices].mean()), 4),
        "mean_cost": round(float(cost[rows, choices].mean()), 4),
        "mix": {route: round(float(counts[i] / len(choices)), 4) for i, route in enumerate(ROUTES)},
    }


def reliability(probabilities: FloatArray, outcomes: FloatArray, bins: int = 10) -> list[dict[str, float]]:
    """Per equal-width bin: its range, the mean prediction, the observed rate and the count (empty bins left out)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
    table = []
    for b in range(bins):
        members = which == b
        if members.any():
            table.append(
                {
                    "low": round(float(edges[b]), 3),
                    "high": round(float(edges[b + 1]), 3),
                    "mean_predicted": round(float(probabilities[members].mean()), 4),
                    "observed": round(float(outcomes[members].mean()), 4),
                    "count": int(members.sum()),
                }
            )
    return table
