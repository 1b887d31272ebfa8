"""The lock check (``make check-lock``, run by CI): it passes on the committed lock and names every disagreement
when ``pyproject.toml`` changes without ``make lock``."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def lock_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lock", ROOT / "requirements" / "lock.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def copy_project(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(ROOT / "requirements", tmp_path / "requirements")
    return tmp_path


def test_the_committed_lock_agrees_with_pyproject() -> None:
    assert lock_module().check() == []


def test_a_requirement_changed_without_relocking_is_named(tmp_path: Path) -> None:
    root = copy_project(tmp_path)
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text()
    assert '"structlog>=26.1",' in text
    pyproject.write_text(text.replace('"structlog>=26.1",', '"structlog>=99", "left-pad>=1",'))
    problems = lock_module().check(root)
    assert any("serve.lock was locked from other requirements" in p for p in problems), problems
    assert any("pins structlog==" in p and "outside 'structlog>=99'" in p for p in problems), problems
    assert any("lacks left-pad" in p for p in problems), problems


def test_a_pin_without_its_hash_or_a_missing_lock_is_named(tmp_path: Path) -> None:
    root = copy_project(tmp_path)
    serve = root / "requirements" / "serve.lock"
    lines = serve.read_text().splitlines()
    hashed = next(i for i, line in enumerate(lines) if line.strip().startswith("--hash="))
    serve.write_text("\n".join([*lines[: hashed - 1], lines[hashed - 1].removesuffix(" \\"), *lines[hashed + 1 :]]))
    (root / "requirements" / "train.lock").unlink()
    problems = lock_module().check(root)
    assert "requirements/serve.lock: every pin needs its --hash" in problems, problems
    assert "requirements/train.lock is missing: run `make lock`" in problems, problems
