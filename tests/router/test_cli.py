from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.bundle import load_bundle, load_thresholds
from router.cli import main
from router.settings import get_settings


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("ROUTER_RETRIEVAL__URI", str(tmp_path / "lancedb"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_ingest_reports_counts_and_is_idempotent(corpus_dir: Path, tmp_path: Path, capsys) -> None:
    faq = corpus_dir / "faq.jsonl"
    assert main(["ingest", str(faq), "--json", "--quiet"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["documents"] == first["added"] == len(faq.read_text().splitlines())
    assert first["chunks_written"] == first["total_chunks"] >= first["documents"]
    assert main(["ingest", str(faq), "--json", "--quiet"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["unchanged"] == first["documents"] and second["chunks_written"] == 0
    assert second["total_chunks"] == first["total_chunks"]
    edited = tmp_path / "faq.jsonl"
    lines = faq.read_text().splitlines()
    row = json.loads(lines[0]) | {"text": "A rewritten answer."}
    edited.write_text("\n".join([json.dumps(row), *lines[1:]]))
    assert main(["ingest", str(edited), "--json", "--quiet"]) == 0
    third = json.loads(capsys.readouterr().out)
    assert third["updated"] == 1 and third["unchanged"] == first["documents"] - 1


def test_ingest_of_a_bad_path_fails_with_a_message(tmp_path: Path, capsys) -> None:
    assert main(["ingest", str(tmp_path / "missing.md"), "--quiet"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_train_writes_a_bundle_that_eval_and_the_service_can_load(outcomes_path: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "bundle"
    assert main(["train", "--outcomes", str(outcomes_path), "--out", str(out), "--folds", "3"]) == 0
    printed = capsys.readouterr().out
    bundle = load_bundle(out)
    assert f"bundle {bundle.version}" in printed
    assert bundle.manifest["training"]["rows"] == 300 and bundle.manifest["training"]["split"] == "dev_500"
    assert len(bundle.manifest["training"]["data_sha256"]) == 64
    assert set(bundle.manifest["metrics"]["routes"]) == {"ft", "rag", "both"}
    load_thresholds(out / "thresholds.json")
    assert main(["eval", "--outcomes", str(outcomes_path), "--split", "test", "--model", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == 120 and report["model_version"] == bundle.version
    assert {"em", "mean_cost", "mix", "f1"} <= set(report["routed"])
    assert set(report["baselines"]) == {"always_ft", "always_rag", "always_both", "oracle"}


def test_train_on_a_missing_split_fails_with_a_message(outcomes_path: Path, tmp_path: Path, capsys) -> None:
    assert main(["train", "--outcomes", str(outcomes_path), "--split", "nope", "--out", str(tmp_path)]) == 2
    assert "no rows for split 'nope'" in capsys.readouterr().err


def test_module_entry_point_lists_the_subcommands() -> None:
    result = subprocess.run([sys.executable, "-m", "router", "--help"], capture_output=True, text=True, check=True)
    for command in ("serve", "ingest", "train", "eval"):
        assert command in result.stdout


def test_serve_refuses_a_missing_bundle_naming_the_file(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("ROUTER_MODEL__BUNDLE_DIR", str(tmp_path / "no-bundle"))
    get_settings.cache_clear()
    assert main(["serve"]) == 2
    assert f"{tmp_path / 'no-bundle' / 'manifest.json'}: file not found" in capsys.readouterr().err
