"""Evaluating a bundle on labelled outcomes: calibration per route, and the routed EM/cost against fixed routes."""

from __future__ import annotations

from typing import Any

import numpy as np

from models.bundle import Bundle
from models.metrics import probability_metrics, routed_outcome
from models.outcomes import Outcomes
from models.policy import Thresholds, decide_batch
from models.routes import ROUTES


def evaluate(
    bundle: Bundle, thresholds: Thresholds, outcomes: Outcomes, embeddings: np.ndarray[Any, Any]
) -> dict[str, Any]:
    probabilities = bundle.classifier.predict_proba(embeddings)
    choices = decide_batch(probabilities, thresholds)
    n = len(outcomes)
    return {
        "model_version": bundle.version,
        "rows": n,
        "thresholds": thresholds.as_dict(),
        "routed": routed_outcome(choices, outcomes.em, outcomes.cost)
        | {"f1": round(float(outcomes.f1[np.arange(n), choices].mean()), 4)},
        "calibration": probability_metrics(probabilities, outcomes.em),
        "baselines": {
            **{f"always_{r}": routed_outcome(np.full(n, i), outcomes.em, outcomes.cost) for i, r in enumerate(ROUTES)},
            "oracle": {"em": round(float(outcomes.em.max(axis=1).mean()), 4)},
        },
    }
