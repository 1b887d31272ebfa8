from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.bundle import load_bundle, load_thresholds
from router.cli import main
from router.lib.settings import get_settings


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


@pytest.fixture(scope="module")
def trained(outcomes_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A bundle trained once by ``router train`` on the sample's dev rows, and what the command printed."""
    out = tmp_path_factory.mktemp("bundle")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["train", "--outcomes", str(outcomes_path), "--out", str(out), "--folds", "3"]) == 0
    return out, printed.getvalue()


def test_train_writes_a_bundle_that_eval_can_load(outcomes_path: Path, trained: tuple[Path, str], capsys) -> None:
    out, printed = trained
    bundle = load_bundle(out)
    assert f"bundle {bundle.version}" in printed
    assert bundle.manifest["training"]["rows"] == 300 and bundle.manifest["training"]["split"] == "dev_500"
    assert len(bundle.manifest["training"]["data_sha256"]) == 64
    assert bundle.reference is not None and len(bundle.reference.questions) == 300  # for explanations and drift
    assert set(bundle.manifest["metrics"]["routes"]) == {"ft", "rag", "both"}
    load_thresholds(out / "thresholds.json")
    eval_args = [
        "eval",
        "--outcomes",
        str(outcomes_path),
        "--model",
        str(out),
        "--json",
        "--skip-lodo",
        "--no-robustness",
    ]
    assert main([*eval_args, "--resamples", "100"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == 120 and report["model_version"] == bundle.version
    assert {"em", "mean_cost", "mix", "f1"} <= set(report["routed"])
    assert set(report["baselines"]) == {
        "always_ft",
        "always_rag",
        "always_both",
        "random_matched_mix",
        "knn",
        "dataset_prior",
        "adaptive_rag",
        "oracle",
    }
    assert "lodo" not in report


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


def test_test_rows_never_reach_training(outcomes_path: Path, tmp_path: Path, capsys) -> None:
    """Test rows are poisoned: if training read a single one, it would fail on the non-numeric label."""
    poisoned = tmp_path / "outcomes.jsonl"
    lines = []
    for line in outcomes_path.read_text().splitlines():
        row = json.loads(line)
        if row["split"] == "test":
            row["em_zero"] = "poison"
        lines.append(json.dumps(row))
    poisoned.write_text("\n".join(lines))
    out = tmp_path / "bundle"
    assert main(["train", "--outcomes", str(poisoned), "--out", str(out), "--folds", "3"]) == 0, capsys.readouterr()
    assert load_bundle(out).manifest["training"]["rows"] == 300
    assert main(["train", "--outcomes", str(poisoned), "--split", "test", "--out", str(tmp_path / "b2")]) == 2
    assert "poison" in capsys.readouterr().err


def test_eval_writes_a_consistent_report_with_plots(
    outcomes_path: Path, trained: tuple[Path, str], tmp_path: Path, capsys
) -> None:
    bundle_dir = trained[0]
    report_dir = tmp_path / "report"
    args = [
        "eval",
        "--outcomes",
        str(outcomes_path),
        "--model",
        str(bundle_dir),
        "--json",
        "--out",
        str(report_dir),
        "--resamples",
        "200",
        "--record",
        "--no-robustness",  # tests/models/test_robustness.py covers that section end to end
    ]
    capsys.readouterr()
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"routed", "curve", "calibration", "baselines", "ci", "per_dataset", "lodo"} <= set(report)
    routed, base, curve, ci = report["routed"], report["baselines"], report["curve"], report["ci"]
    assert report["rows"] == 120
    assert sum(routed["mix"].values()) == pytest.approx(1.0, abs=1e-3)
    assert ci["routed_em"][0] <= routed["em"] <= ci["routed_em"][1]
    assert base["always_ft"]["em"] <= base["oracle"]["em"] and routed["em"] <= base["oracle"]["em"]
    assert base["adaptive_rag"]["mean_cost"] > 0 and base["random_matched_mix"]["mix"] == routed["mix"]
    knobs = [p["knob"] for p in curve["points"]]
    assert knobs == sorted(knobs)
    assert curve["points"][-1]["mean_cost"] == 0.0 and curve["points"][-1]["em"] == base["always_ft"]["em"]
    assert curve["em_at_cost"]["0.5"] <= curve["em_at_cost"]["1.0"] <= curve["em_at_cost"]["1.85"]
    prior = base["dataset_prior"]["curve"]
    assert prior["points"][-1]["em"] == base["always_ft"]["em"] and prior["em_at_cost"]["1.85"] <= base["oracle"]["em"]
    assert set(report["per_dataset"]) == set(report["lodo"]) and len(report["lodo"]) == 6
    rows = sum(d["rows"] for d in report["per_dataset"].values())
    assert rows == 120
    weighted = sum(d["rows"] * d["routed"]["em"] for d in report["per_dataset"].values()) / rows
    assert weighted == pytest.approx(routed["em"], abs=1e-3)
    recorded = load_bundle(bundle_dir).manifest["evaluation"]["test"]
    assert recorded["routed"] == routed and recorded["ci"] == ci and "reliability" not in str(recorded)
    markdown = (report_dir / "report.md").read_text()
    assert "## Paired comparison with Adaptive-RAG" in markdown and "## Leave one dataset out" in markdown
    assert "| dataset prior at mean cost <= 1.0 (knows the dataset) |" in markdown
    for png in ("em_vs_cost.png", "reliability.png"):
        assert (report_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
