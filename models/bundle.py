"""Versioned model bundles: the route classifier plus a manifest, and the thresholds it was shipped with.

A bundle is a directory::

    manifest.json     format, version, embedder {name, dimension}, routes, costs, calibration,
                      training {data_sha256, split, rows, options}, libraries, metrics
    classifier.npz    linear heads, calibrator knots, shape-feature scaling (plain arrays, loaded without pickle)
    thresholds.json   the default policy chosen at training time: thresholds and cost_weight

The version is ``<UTC date>-<first 10 hex of the classifier's sha256>``, so equal weights give equal versions.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from models.classifier import Calibrator, RouteClassifier, ShapeScaler
from models.embedder import Embedder
from models.features import SHAPE_DIMENSION
from models.policy import Policy, Thresholds
from models.reference import REFERENCE, Reference, load_reference, reference_bytes
from models.routes import ROUTES

FORMAT = 1
MANIFEST, CLASSIFIER, THRESHOLDS = "manifest.json", "classifier.npz", "thresholds.json"
LIBRARIES = ("numpy", "scikit-learn", "sentence-transformers", "torch", "transformers")


class BundleError(RuntimeError):
    """A bundle is missing, corrupt, or does not fit the configured embedder. The message names the file."""


@dataclass(frozen=True)
class Bundle:
    classifier: RouteClassifier
    manifest: dict[str, Any]
    reference: Reference | None = None
    """The training questions and score distribution (explanations, drift); None in bundles made without it."""

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def costs(self) -> tuple[float, ...]:
        """Expected cost (retrieval calls) of each route at decision time, in ``ROUTES`` order."""
        return tuple(float(self.manifest["costs"][route]) for route in ROUTES)

    def policy(self, record: ThresholdsRecord) -> Policy:
        return Policy(record.thresholds, record.cost_weight, self.costs)


def default_bundle_dir() -> Path:
    """The bundle trained on the benchmark's ``dev_500`` split, shipped inside the ``models`` package."""
    return Path(__file__).parent / "default_bundle"


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def _classifier_bytes(classifier: RouteClassifier) -> bytes:
    arrays: dict[str, np.ndarray[Any, Any]] = {"weights": classifier.weights, "biases": classifier.biases}
    if classifier.shape is not None:
        arrays["shape_mean"], arrays["shape_scale"] = classifier.shape.mean, classifier.shape.scale
    for route, calibrator in zip(ROUTES, classifier.calibrators, strict=True):
        arrays[f"{route}_x"], arrays[f"{route}_y"] = calibrator.knots_x, calibrator.knots_y
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle
    return buffer.getvalue()


def atomic_write(path: Path, data: bytes) -> None:
    """Writes via a temporary file in the same directory and a rename, so readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    Path(handle.name).chmod(0o644)
    Path(handle.name).replace(path)


def save_bundle(
    directory: Path,
    classifier: RouteClassifier,
    thresholds: Thresholds,
    cost_weight: float,
    manifest_fields: dict[str, Any],
    reference: Reference | None = None,
) -> Bundle:
    """Writes a bundle; ``manifest_fields`` adds embedder, calibration, training and metrics entries."""
    payload = _classifier_bytes(classifier)
    now = datetime.now(UTC)
    manifest = {
        "format": FORMAT,
        "version": f"{now:%Y%m%d}-{hashlib.sha256(payload).hexdigest()[:10]}",
        "created_at": now.isoformat(timespec="seconds"),
        "routes": list(ROUTES),
        "libraries": library_versions(),
        **manifest_fields,
    }
    atomic_write(directory / CLASSIFIER, payload)
    atomic_write(directory / THRESHOLDS, thresholds_document(thresholds, cost_weight, "router train", 1))
    if reference is not None:
        atomic_write(directory / REFERENCE, reference_bytes(reference))
    atomic_write(directory / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    return Bundle(classifier=classifier, manifest=manifest, reference=reference)


def record_evaluation(directory: Path, split: str, report: dict[str, Any]) -> None:
    """Adds an evaluation's headline figures to the manifest under ``evaluation[split]``."""
    manifest = _read_json(directory / MANIFEST)
    headline = {key: report[key] for key in ("rows", "routed", "ci")}
    headline["curve"] = {key: report["curve"][key] for key in ("em_at_cost", "normalised_area")}
    headline["calibration"] = {
        route: {key: value for key, value in metrics.items() if key != "reliability"}
        for route, metrics in report["calibration"].items()
    }
    headline["adaptive_rag"] = report["baselines"].get("adaptive_rag")
    manifest.setdefault("evaluation", {})[split] = headline
    atomic_write(directory / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())


def thresholds_document(thresholds: Thresholds, cost_weight: float, updated_by: str, version: int) -> bytes:
    document = {
        "version": version,
        "thresholds": thresholds.as_dict(),
        "cost_weight": cost_weight,
        "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "updated_by": updated_by,
    }
    return (json.dumps(document, indent=2) + "\n").encode()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BundleError(f"{path}: file not found") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise BundleError(f"{path}: expected a JSON object")
    return document


def check_embedder(bundle: Bundle, embedder: Embedder, where: Path) -> None:
    """Refuses an embedder whose vectors are not the ones ``bundle`` (at ``where``) was trained on."""
    expected = bundle.manifest["embedder"]
    if embedder.dimension != expected["dimension"]:
        raise BundleError(
            f"{where}: bundle was trained on {expected['name']} ({expected['dimension']}-d) "
            f"but the configured embedder {embedder.name} makes {embedder.dimension}-d vectors"
        )


def load_bundle(directory: Path) -> Bundle:
    manifest = _read_json(directory / MANIFEST)
    if manifest.get("format") != FORMAT or manifest.get("routes") != list(ROUTES):
        raise BundleError(f"{directory / MANIFEST}: unsupported format {manifest.get('format')!r} or routes")
    path = directory / CLASSIFIER
    try:
        with np.load(path, allow_pickle=False) as arrays:
            calibrators = tuple(
                Calibrator(manifest["calibration"], arrays[f"{route}_x"], arrays[f"{route}_y"]) for route in ROUTES
            )
            shape = ShapeScaler(arrays["shape_mean"], arrays["shape_scale"]) if "shape_mean" in arrays else None
            classifier = RouteClassifier(arrays["weights"], arrays["biases"], calibrators, shape)
    except FileNotFoundError as exc:
        raise BundleError(f"{path}: file not found") from exc
    except (OSError, KeyError, ValueError) as exc:
        raise BundleError(f"{path}: corrupt classifier ({exc})") from exc
    if classifier.shape is not None and len(classifier.shape.mean) != SHAPE_DIMENSION:
        raise BundleError(
            f"{path}: {len(classifier.shape.mean)} shape features, this version computes {SHAPE_DIMENSION}"
        )
    expected = manifest.get("embedder", {}).get("dimension")
    if expected != classifier.dimension:
        raise BundleError(f"{path}: classifier dimension {classifier.dimension} != manifest's {expected}")
    try:
        reference = load_reference(directory)
    except (OSError, KeyError, ValueError) as exc:
        raise BundleError(f"{directory / REFERENCE}: corrupt training reference ({exc})") from exc
    return Bundle(classifier=classifier, manifest=manifest, reference=reference)


@dataclass(frozen=True)
class ThresholdsRecord:
    thresholds: Thresholds
    cost_weight: float
    version: int
    updated_at: str
    updated_by: str


def load_thresholds(path: Path) -> ThresholdsRecord:
    return parse_thresholds(_read_json(path), str(path))


def parse_thresholds(document: Mapping[str, Any], source: str) -> ThresholdsRecord:
    """A thresholds record from its JSON object; ``source`` names where it came from in the error."""
    try:
        record = ThresholdsRecord(
            thresholds=Thresholds.from_mapping(document["thresholds"]),
            cost_weight=float(document.get("cost_weight", 0.0)),
            version=int(document["version"]),
            updated_at=str(document.get("updated_at", "")),
            updated_by=str(document.get("updated_by", "")),
        )
        Policy(record.thresholds, record.cost_weight)  # validates the knob's range
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BundleError(f"{source}: invalid thresholds ({exc})") from exc
    return record
