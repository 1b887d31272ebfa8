"""``router thresholds ...`` against a running service over HTTP: every action, and its errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from router.cli import main
from router.lib.settings import get_settings
from tests.integration.conftest import LiveService, serve
from tests.integration.test_thresholds_api import KEY, settings


@pytest.fixture
def live(tmp_path: Path, outcomes_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveService]:
    with serve(settings(tmp_path, outcomes_file=str(outcomes_path), outcomes_split="test")) as service:
        # the CLI finds the service and the key through settings, as a user's shell would
        monkeypatch.setenv("ROUTER_CLIENT__URL", service.url)
        monkeypatch.setenv("ROUTER_SERVER__ADMIN_API_KEY", KEY)
        get_settings.cache_clear()
        yield service
    get_settings.cache_clear()


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["thresholds", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_show_set_history_and_rollback(live: LiveService, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "show")
    assert code == 0 and out.startswith("version 1  set ") and "cost_weight" in out
    code, out, _ = cli(capsys, "--json", "set", "--cost-weight", "0.05", "--note", "cheaper")
    changed = json.loads(out)
    assert code == 0 and changed["version"] == 2 and changed["cost_weight"] == 0.05
    assert changed["thresholds"] == json.loads(cli(capsys, "--json", "history")[1])[1]["thresholds"]  # kept
    code, out, _ = cli(capsys, "history", "--limit", "5")
    assert code == 0 and out.splitlines()[0].startswith("v2 ") and "# cheaper" in out and "initial" in out
    code, out, _ = cli(capsys, "rollback", "1")
    assert code == 0 and out.startswith("version 3 ")
    assert httpx.get(f"{live.url}/v1/thresholds").json()["version"] == 3


def test_calibrate_evaluate_and_apply(
    live: LiveService, capsys: pytest.CaptureFixture[str], outcomes_path: Path
) -> None:
    code, out, _ = cli(capsys, "calibrate", "--rag", "0.3", "--both", "0.1", "--source", "outcomes")
    assert code == 0 and "split test, 120 questions" in out and "EM " in out and "not applied" in out
    code, out, _ = cli(capsys, "--json", "evaluate", "--cost-weight", "10", "--source", "outcomes")
    whatif = json.loads(out)
    assert code == 0 and whatif["proposed"]["mix"]["ft"] == 1.0  # the cheapest route everywhere
    target = ("--rag", "0.3", "--both", "0.1")
    code, out, _ = cli(capsys, "--json", "calibrate", *target, "--source", "outcomes", "--apply")
    applied = json.loads(out)
    assert code == 0 and applied["applied"]["version"] == 2
    assert applied["applied"]["thresholds"] == applied["proposal"]["thresholds"]
    history = httpx.get(f"{live.url}/v1/thresholds/history").json()
    assert history[0]["note"].startswith('calibrated to {"rag": 0.3, "both": 0.1} on outcomes')


def test_errors_say_why_and_exit_non_zero(
    live: LiveService, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = cli(capsys, "set", "--ft", "2")
    assert code == 1 and "400" in err and "thresholds.ft: must be at most 1.0" in err
    code, _, err = cli(capsys, "evaluate")  # no traffic yet
    assert code == 1 and "need at least 20" in err
    code, _, err = cli(capsys, "--key", "not-the-key-at-all", "set", "--cost-weight", "0.1")
    assert code == 1 and "401" in err
    code, _, err = cli(capsys, "--url", "http://127.0.0.1:9", "show")
    assert code == 3 and "cannot reach the service at http://127.0.0.1:9" in err
