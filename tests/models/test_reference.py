"""The bundle's training reference: nearest questions, PSI, and the drift index on real embeddings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.bundle import default_bundle_dir, load_bundle
from models.embedder import Embedder
from models.reference import DRIFT_ALERT, best_route, drift, psi

ROOT = Path(__file__).resolve().parents[2]


def test_psi_is_zero_on_the_same_distribution_and_large_on_a_shifted_one() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=20_000)
    assert psi(reference, rng.normal(size=20_000)) < 0.01
    assert psi(reference, rng.normal(loc=1.0, size=20_000)) > 0.5
    assert psi(reference, np.array([])) == 0.0


def test_best_route_is_the_cheapest_correct_one() -> None:
    assert best_route(np.array([0, 1, 1])) == "rag"
    assert best_route(np.array([1, 1, 1])) == "ft"
    assert best_route(np.array([0, 0, 0])) is None


def test_the_default_bundle_explains_and_measures_drift(outcomes_path: Path, embedder: Embedder):
    bundle = load_bundle(default_bundle_dir())
    reference = bundle.reference
    assert reference is not None and len(reference.questions) == bundle.manifest["training"]["rows"]
    rows = [json.loads(line) for line in outcomes_path.read_text().splitlines()]
    dev = [r for r in rows if r["split"] == "dev_500"]
    vector = embedder.encode([dev[0]["question"]])[0]
    nearest = reference.nearest(vector, k=3)
    assert nearest[0].question == dev[0]["question"] and nearest[0].similarity == pytest.approx(1.0, abs=1e-3)
    assert nearest[0].best_route == best_route(np.array([dev[0][f"em_{s}"] for s in ("zero", "single", "multi")]))
    # in distribution: the 420 benchmark questions of the test sample
    questions = [r["question"] for r in rows]
    vectors = embedder.encode(questions)
    inside = drift(reference, bundle.classifier.predict_proba(vectors, questions), vectors)
    assert inside.index < 0.1 and not inside.alert
    # shifted: sentences of the sample corpus (product documentation, not trivia questions)
    lines = [
        line.strip()
        for path in sorted((ROOT / "deploy" / "sample-corpus").glob("*.md"))
        for line in path.read_text().splitlines()
        if len(line.strip()) > 40
    ][:200]
    shifted_vectors = embedder.encode(lines)
    shifted = drift(reference, bundle.classifier.predict_proba(shifted_vectors, lines), shifted_vectors)
    assert shifted.index > DRIFT_ALERT and shifted.alert
