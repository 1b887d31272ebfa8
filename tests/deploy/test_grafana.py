"""The Grafana dashboard queries only what the real app's ``/metrics`` exposes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from router.lib.settings import Settings
from tests.conftest import ROOT
from tests.integration.conftest import ingest_corpus, serve

DASHBOARD = ROOT / "deploy" / "grafana" / "router-dashboard.json"
SERIES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count"), "unknown": ("",)}
"""The series names each metric type is queried by (a histogram's own name is no series)."""
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                "offset", "inf", "nan"}  # fmt: skip
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETED = re.compile(r"\{[^}]*\}|\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w:$.])([A-Za-z_:][\w:]*)\b(?!\s*\()")


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression reads: what is left without strings, matchers, ranges, groupings,
    function calls, keywords and numbers."""
    bare = _GROUPING.sub(" ", _BRACKETED.sub(" ", _QUOTED.sub('""', expr)))
    return {name for name in _NAME.findall(bare) if name.lower() not in PROMQL_WORDS}


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


@pytest.fixture(scope="module")
def exposed(tmp_path_factory: pytest.TempPathFactory, embedder, corpus_dir: Path) -> set[str]:
    """Series names of the real app's ``/metrics`` after a decision, an answer and an unknown path."""
    settings = Settings(retrieval={"uri": str(tmp_path_factory.mktemp("lancedb"))})
    ingest_corpus(settings, embedder, corpus_dir)
    with serve(settings) as service, httpx.Client(base_url=service.url, timeout=30) as http:
        assert http.post("/v1/route", json={"query": "What is LoRA?"}).status_code == 200
        assert http.post("/v1/query", json={"query": "What is LoRA?"}).status_code == 200
        assert http.get("/v1/nothing").status_code == 404
        text = http.get("/metrics").text
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {sample.name for sample in family.samples}
        names |= {family.name + suffix for suffix in SERIES[family.type]}
    return names


def test_metric_names_are_found_in_exprs() -> None:
    expr = 'histogram_quantile(0.99, sum by (le, stage) (rate(router_stage_seconds_bucket{a=~"$x"}[$__rate_interval])))'
    assert metric_names(expr) == {"router_stage_seconds_bucket"}
    ratio = 'sum(rate(a_sum{route="ft"}[5m])) / sum without (x) (rate(b_count[1m] offset 1h)) > bool 0.2'
    assert metric_names(ratio) == {"a_sum", "b_count"}
    assert metric_names("max(up) * on (job) group_left (version) build_info") == {"up", "build_info"}


def test_every_query_reads_only_exposed_series(dashboard: dict[str, Any], exposed: set[str]) -> None:
    assert {"router_decisions_total", "router_stage_seconds_bucket", "router_fallbacks_total"} <= exposed
    used: set[str] = set()
    for panel in panels(dashboard["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names and names <= exposed, (panel["title"], target["expr"], names - exposed)
            if "histogram_quantile" in target["expr"]:
                assert all(name.endswith("_bucket") for name in names), target["expr"]
            used |= names
    variables = [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    for query in variables:  # label_values(<series>, <label>)
        assert re.fullmatch(r"label_values\((\w+), \w+\)", query)[1] in exposed  # type: ignore[index]
    family = re.compile(r"_(total|bucket|sum|count)$")
    every = {family.sub("", name) for name in exposed if not name.endswith("_created")}
    assert {family.sub("", name) for name in used} == every  # and every metric has a panel


def test_panel_ids_are_unique_and_use_the_datasource_variable(dashboard: dict[str, Any]) -> None:
    assert dashboard["schemaVersion"] == 39
    assert any(v["name"] == "DS_PROMETHEUS" and v["type"] == "datasource" for v in dashboard["templating"]["list"])
    ids = [panel["id"] for panel in panels(dashboard["panels"])]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard["panels"]):
        for ref in [panel.get("datasource"), *(t.get("datasource") for t in panel.get("targets", []))]:
            assert ref == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel["title"]


def test_drift_panel_draws_its_threshold_at_0_2(dashboard: dict[str, Any]) -> None:
    drift = next(p for p in panels(dashboard["panels"]) if "router_drift_index" in p["targets"][0]["expr"])
    defaults = drift["fieldConfig"]["defaults"]
    assert defaults["custom"]["thresholdsStyle"]["mode"] == "line"
    assert [step["value"] for step in defaults["thresholds"]["steps"]] == [None, 0.2]
