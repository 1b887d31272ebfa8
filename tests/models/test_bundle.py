from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.bundle import BundleError, default_bundle_dir, load_bundle, load_thresholds, save_bundle
from models.classifier import Calibrator, RouteClassifier
from models.policy import Thresholds
from models.routes import ROUTES


def _classifier(dimension: int = 8, seed: int = 0) -> RouteClassifier:
    rng = np.random.default_rng(seed)
    calibrators = (
        Calibrator("sigmoid", np.array([1.5, -0.2]), np.zeros(0)),
        Calibrator("sigmoid", np.array([0.8, 0.1]), np.zeros(0)),
        Calibrator("sigmoid", np.array([1.1, 0.0]), np.zeros(0)),
    )
    return RouteClassifier(rng.normal(size=(3, dimension)), rng.normal(size=3), calibrators)


def _save(directory: Path, classifier: RouteClassifier) -> None:
    fields = {
        "embedder": {"name": "test", "dimension": classifier.dimension},
        "calibration": "sigmoid",
        "costs": {"ft": 0.0, "rag": 1.0, "both": 3.35},
    }
    save_bundle(directory, classifier, Thresholds(0.6, 0.4, 0.0), 0.02, fields)


def test_round_trip_gives_identical_probabilities_and_manifest(tmp_path: Path) -> None:
    classifier = _classifier()
    _save(tmp_path, classifier)
    loaded = load_bundle(tmp_path)
    x = np.random.default_rng(3).normal(size=(50, 8))
    np.testing.assert_array_equal(loaded.classifier.predict_proba(x), classifier.predict_proba(x))
    assert loaded.manifest["routes"] == list(ROUTES)
    assert {"numpy", "scikit-learn", "python"} <= set(loaded.manifest["libraries"])
    record = load_thresholds(tmp_path / "thresholds.json")
    assert (record.thresholds, record.cost_weight, record.version) == (Thresholds(0.6, 0.4, 0.0), 0.02, 1)


def test_version_is_content_addressed(tmp_path: Path) -> None:
    _save(tmp_path / "a", _classifier(seed=1))
    _save(tmp_path / "b", _classifier(seed=1))
    _save(tmp_path / "c", _classifier(seed=2))
    versions = [load_bundle(tmp_path / name).version for name in "abc"]
    assert versions[0] == versions[1] != versions[2]


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda d: (d / "manifest.json").write_text("{not json"), "manifest.json"),
        (lambda d: (d / "manifest.json").unlink(), "manifest.json"),
        (lambda d: (d / "classifier.npz").write_bytes(b"garbage"), "classifier.npz"),
        (lambda d: (d / "classifier.npz").unlink(), "classifier.npz"),
    ],
)
def test_damaged_bundle_is_refused_naming_the_file(tmp_path: Path, damage, named: str) -> None:
    _save(tmp_path, _classifier())
    damage(tmp_path)
    with pytest.raises(BundleError, match=named):
        load_bundle(tmp_path)


def test_manifest_dimension_must_match_the_weights(tmp_path: Path) -> None:
    _save(tmp_path, _classifier())
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["embedder"]["dimension"] = 384
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="dimension"):
        load_bundle(tmp_path)


def test_invalid_thresholds_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps({"version": 1, "thresholds": {"ft": 2, "rag": 0.1, "both": 0}}))
    with pytest.raises(BundleError, match="thresholds.json"):
        load_thresholds(path)


def test_shipped_default_bundle_loads_and_was_trained_on_dev_only() -> None:
    bundle = load_bundle(default_bundle_dir())
    assert bundle.manifest["embedder"] == {"name": "sentence-transformers/all-MiniLM-L6-v2", "dimension": 384}
    assert bundle.manifest["training"]["split"] == "dev_500"
    assert bundle.manifest["training"]["rows"] == 3000
    assert bundle.manifest["calibration"] in {"sigmoid", "isotonic"}
    load_thresholds(default_bundle_dir() / "thresholds.json")


def test_cost_weight_out_of_range_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps({"version": 1, "thresholds": {"ft": 0, "rag": 0, "both": 0}, "cost_weight": -1}))
    with pytest.raises(BundleError, match="cost_weight"):
        load_thresholds(path)
