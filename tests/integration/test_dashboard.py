"""The dashboard in a real headless browser: Chromium driven through selenium and the system chromedriver, against
the real app answering through a fake vLLM on a real socket (some calls fail on command, so some answers fall back).

The test sends its own mixed traffic, opens ``/dashboard``, and checks every chart's SVG marks (``data-series`` and
``data-value``) against that traffic, then opens one decision's drill-down and saves a screenshot of each view under
``tests/artifacts/``. Skipped when no Chromium or chromedriver binary is on PATH (``.ci/run`` installs them).
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from router.lib.settings import Settings
from router.routing_log.stats import MIN_DRIFT_ROWS
from tests.fakes.vllm import FakeVLLM
from tests.fakes.vllm_server import fake_vllm_server
from tests.integration.conftest import LiveService, serve

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
CHROMEDRIVER = shutil.which("chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
ROUTES = ("ft", "rag", "both")
WAIT_S = 60
TOTAL = max(60, MIN_DRIFT_ROWS + 10)
"""Decisions the test sends: enough for the drift panel to be measured."""
NEWEST = [f"dash-{i:03d}" for i in reversed(range(TOTAL - 20, TOTAL))]
"""The request ids of the latest-decisions list, newest first."""
DRILLED = next(i for i in reversed(range(TOTAL)) if i % 4 != 3)
"""The newest request sent to /v1/query (every fourth goes to /v1/route), opened in the drill-down."""

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs a Chromium binary and chromedriver on PATH (Debian: apt-get install chromium chromium-driver)",
)

QUESTIONS = [
    "What does the alpha parameter of LoRA control?",
    "How do I enable LoRA adapters in vLLM?",
    "How does reciprocal rank fusion work?",
    "How many dimensions does all-MiniLM-L6-v2 produce?",
    "who wrote the novel pride and prejudice",
    "What is the capital of Australia?",
    "Which film came out first, the one directed by the director of Alien or Blade Runner?",
    "What is the birth date of the director of the film that won best picture the year Titanic was released?",
    "When should a query skip retrieval altogether?",
    "What is expected calibration error and how is it computed?",
    "How do HNSW indexes trade recall for speed?",
    "Who painted the ceiling of the Sistine Chapel?",
    "What does exact match measure in question answering?",
    "Which river is longer, the Nile or the Amazon?",
    "How should an LLM service handle a full request queue?",
]
FAULTS = {6: [("status", 500), ("status", 500)], 22: [("status", 404)], 41: [("status", 500), ("status", 500)]}
"""Request number -> what the fake LLM answers its calls with (forced ft, rag, both): each ends in a fallback."""

SUMMARY_JS = """
const marks = (selector) => [...document.querySelectorAll(selector)].map((node) => ({
  series: node.dataset.series, value: Number(node.dataset.value), group: node.dataset.group || null }));
return {
  state: document.body.dataset.state,
  errors: document.getElementById("errors").innerText,
  mixTime: marks("#chart-mix-time [data-series]"),
  mix: marks("#chart-mix [data-series]"),
  decisions: document.querySelector("#chart-mix text.big")?.textContent,
  confidence: marks("#chart-confidence [data-series]"),
  latencyStage: marks("#chart-latency-stage [data-series]"),
  latencyRoute: marks("#chart-latency-route [data-series]"),
  fallbacks: marks("#chart-fallbacks [data-series]"),
  drift: marks("#chart-drift [data-series]"),
  driftAlert: document.getElementById("drift-card").dataset.alert,
  thresholds: marks("#chart-thresholds [data-series]"),
  requestIds: [...document.querySelectorAll("#decisions li[data-request-id]")].map((li) => li.dataset.requestId),
};
"""
DRILL_JS = """
const dialog = document.getElementById("drill");
return {
  state: dialog.dataset.state,
  text: dialog.innerText,
  neighbours: [...dialog.querySelectorAll("li[data-neighbour]")].map((li) => li.dataset.bestRoute),
  marks: [...dialog.querySelectorAll("[data-series]")].map((node) => node.dataset.series),
};
"""
DIALOG_STATE_JS = "const dialog = document.getElementById('drill'); return dialog.open ? dialog.dataset.state : null;"


def totals(marks: list[dict[str, Any]]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for mark in marks:
        counts[mark["series"]] += mark["value"]
    return counts


@pytest.fixture(scope="module")
def fake() -> FakeVLLM:
    return FakeVLLM(base_model="base", adapters={"ft": "/adapters/ft"}, reply="Use --enable-lora; see [1].")


@pytest.fixture(scope="module")
def llm_url(fake: FakeVLLM) -> Iterator[str]:
    with fake_vllm_server(fake) as url:
        yield url


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, corpus_uri: str, llm_url: str) -> Iterator[LiveService]:
    """The app with its own copy of the corpus and its own routing log, answering through the fake vLLM."""
    root = tmp_path_factory.mktemp("dashboard")
    shutil.copytree(corpus_uri, root / "lancedb")
    settings = Settings(
        retrieval={"uri": str(root / "lancedb")},
        routing_log={"uri": str(root / "routing-log")},
        llm={"base_url": llm_url, "base_model": "base", "ft_model": "ft", "retry_attempts": 2, "total_timeout": 10},
        breaker={"min_calls": 1000},  # three failing calls must not open a circuit
        log={"format": "json"},
    )
    with serve(settings) as live:
        yield live


@pytest.fixture(scope="module")
def traffic(service: LiveService, fake: FakeVLLM) -> list[dict[str, Any]]:
    """TOTAL decisions: /v1/route and /v1/query over varied questions, some with a forced route, three falling back."""
    sent = []
    with httpx.Client(base_url=service.url, timeout=30) as http:
        for i in range(TOTAL):
            fake.faults[:] = FAULTS.get(i, [])
            question = QUESTIONS[i % len(QUESTIONS)]
            if i % 4 == 3:
                response = http.post("/v1/route", json={"query": question}, headers={"X-Request-ID": f"dash-{i:03d}"})
            else:
                body: dict[str, Any] = {"query": question}
                if i % 5 == 0 or i in FAULTS:
                    body["route"] = ROUTES[i % 3]
                response = http.post("/v1/query", json=body, headers={"X-Request-ID": f"dash-{i:03d}"})
            assert response.status_code == 200, response.text
            sent.append(response.json())
    fake.faults.clear()
    return sent


@contextmanager
def chromium() -> Iterator[WebDriver]:
    """Headless Chromium through the system chromedriver, its console kept for ``get_log("browser")``."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--lang=en-GB"):
        options.add_argument(argument)
    options.add_argument("--window-size=1440,1000")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    with chromium() as driver:
        yield driver


def summary_when_drawn(browser: WebDriver, expected_ids: list[str]) -> dict[str, Any]:
    """The page's marks, once a refresh has drawn every chart with the test's latest decisions."""

    def drawn(driver: WebDriver) -> dict[str, Any] | None:
        summary: dict[str, Any] = driver.execute_script(SUMMARY_JS)
        ready = summary["state"] == "ready" and summary["requestIds"] == expected_ids
        return summary if ready else None

    try:
        return WebDriverWait(browser, WAIT_S, poll_frequency=0.2).until(drawn)
    except TimeoutException:
        state = browser.execute_script(SUMMARY_JS)
        pytest.fail(f"the dashboard did not draw the traffic: {json.dumps(state)[:2000]}")


def open_drill_down(browser: WebDriver, request_id: str) -> None:
    def clicked(driver: WebDriver) -> bool:
        try:
            driver.find_element(By.CSS_SELECTOR, f'#decisions li[data-request-id="{request_id}"]').click()
        except StaleElementReferenceException:  # the list was redrawn by the 5 s refresh between find and click
            return False
        return True

    WebDriverWait(browser, WAIT_S).until(clicked)
    WebDriverWait(browser, WAIT_S).until(lambda d: d.execute_script(DIALOG_STATE_JS) in ("ready", "error"))


def screenshot(browser: WebDriver, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    height = int(browser.execute_script("return document.documentElement.scrollHeight"))
    metrics = {"width": 1440, "height": height, "deviceScaleFactor": 1, "mobile": False}
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)  # the whole page in one shot
    path = ARTIFACTS / name
    browser.save_screenshot(str(path))
    print(f"dashboard screenshot: {path}")
    return path


@pytest.fixture(scope="module")
def http(service: LiveService) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def drawn(service: LiveService, traffic: list[dict[str, Any]], browser: WebDriver) -> dict[str, Any]:
    """The dashboard's marks over the last 15 minutes, once drawn with the traffic's newest 20 decisions listed."""
    browser.get(f"{service.url}/dashboard?window=900")
    return summary_when_drawn(browser, NEWEST)


def test_the_page_is_served_under_a_strict_content_security_policy(http: httpx.Client) -> None:
    page = http.get("/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "style-src 'self'" in policy
    assert http.get("/dashboard/app.js").headers["content-type"].startswith("text/javascript")
    assert http.get("/dashboard/app.css").headers["content-type"].startswith("text/css")
    assert http.get("/dashboard/secrets.txt").status_code == 404
    assert "/dashboard" not in http.get("/schema/openapi.json").json()["paths"]


def test_mix_charts_count_every_decision_by_route(traffic: list[dict[str, Any]], drawn: dict[str, Any]) -> None:
    routes = Counter(body["route"] for body in traffic)
    assert drawn["errors"] == ""
    assert sum(routes.values()) == len(traffic) == TOTAL and len(routes) == 3
    assert totals(drawn["mixTime"]) == routes
    assert totals(drawn["mix"]) == routes and drawn["decisions"] == str(TOTAL)


def test_confidence_histograms_hold_every_score_and_mark_the_live_thresholds(
    http: httpx.Client, drawn: dict[str, Any]
) -> None:
    live = http.get("/v1/thresholds").json()["thresholds"]
    assert totals(m for m in drawn["confidence"] if m["series"] in ROUTES) == dict.fromkeys(ROUTES, TOTAL)
    markers = {m["series"]: m["value"] for m in drawn["confidence"] if m["series"].startswith("threshold-")}
    assert markers == {f"threshold-{route}": live[route] for route in ROUTES}
    shown = {m["series"]: m["value"] for m in drawn["thresholds"] if m["series"].startswith("threshold-")}
    assert shown == markers


def test_latency_charts_cover_every_stage_and_route(traffic: list[dict[str, Any]], drawn: dict[str, Any]) -> None:
    stages = ("embed", "classify", "retrieve", "generate", "total")
    bars = {(m["group"], m["series"]) for m in drawn["latencyStage"]}
    assert bars == {(stage, p) for stage in stages for p in ("p50", "p95", "p99")}
    assert all(m["value"] > 0 for m in drawn["latencyStage"] if m["group"] in ("embed", "total"))
    assert {m["group"] for m in drawn["latencyRoute"]} == {body["route"] for body in traffic}


def test_fallbacks_and_drift_match_the_traffic(
    http: httpx.Client, traffic: list[dict[str, Any]], drawn: dict[str, Any]
) -> None:
    reasons = Counter(body["fallback"]["reason"] for body in traffic if body.get("fallback"))
    assert sum(reasons.values()) == len(FAULTS)
    marks = totals(drawn["fallbacks"])
    assert marks["fallbacks"] == marks["reason"] == len(FAULTS)
    drift = http.get("/v1/stats", params={"window": 900}).json()["drift"]
    assert drift is not None  # TOTAL is more than the decisions drift is measured from
    shown = {m["series"]: m["value"] for m in drawn["drift"]}
    assert shown["drift-index"] == pytest.approx(drift["index"])
    assert [shown[f"psi-{route}"] for route in ROUTES] == pytest.approx([drift["scores"][r] for r in ROUTES])
    assert drawn["driftAlert"] == str(drift["alert"]).lower()


def test_a_listed_decision_opens_its_drill_down(browser: WebDriver, drawn: dict[str, Any]) -> None:
    page = screenshot(browser, "dashboard.png")
    assert page.stat().st_size > 10_000
    request_id = f"dash-{DRILLED:03d}"
    open_drill_down(browser, request_id)
    drill: dict[str, Any] = browser.execute_script(DRILL_JS)
    assert drill["state"] == "ready", drill["text"]
    assert request_id in drill["text"] and QUESTIONS[DRILLED % len(QUESTIONS)] in drill["text"]
    assert drill["neighbours"] and set(drill["neighbours"]) <= {*ROUTES, "none"}  # none: no route was right
    assert {f"score-{r}" for r in ROUTES} | {f"threshold-{r}" for r in ROUTES} <= set(drill["marks"])
    assert {"timing-embed", "timing-retrieve", "timing-generate"} <= set(drill["marks"])
    screenshot(browser, "dashboard-drilldown.png")
    console = [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    assert console == []  # since the page opened: no script error, failed call or CSP violation


KEY = "dashboard-test-admin-key"


def page_state(browser: WebDriver, wanted: str) -> dict[str, Any]:
    script = """return {state: document.body.dataset.state, errors: document.getElementById("errors").innerText,
      needed: document.getElementById("key-form").dataset.needed, search: location.search,
      kept: sessionStorage.getItem("router.dashboard.key")};"""
    WebDriverWait(browser, WAIT_S).until(lambda d: d.execute_script(script)["state"] == wanted)
    found: dict[str, Any] = browser.execute_script(script)
    return found


def test_reads_behind_the_admin_key_show_why_then_work_with_the_key(corpus_uri: str, tmp_path: Path) -> None:
    settings = Settings(
        retrieval={"uri": corpus_uri},
        routing_log={"uri": str(tmp_path / "routing-log"), "protect_reads": True},
        thresholds={"protect_reads": True},
        server={"admin_api_key": KEY},
    )
    with serve(settings) as live, chromium() as browser:
        browser.get(f"{live.url}/dashboard")
        refused = page_state(browser, "error")
        assert "send the admin key" in refused["errors"] and refused["needed"] == "true"
        browser.find_element(By.ID, "key").send_keys(KEY + "\n")
        typed = page_state(browser, "ready")
        assert (typed["errors"], typed["needed"], typed["kept"]) == ("", "false", KEY)
        browser.find_element(By.ID, "key-clear").click()
        assert page_state(browser, "error")["kept"] is None
        browser.get(f"{live.url}/dashboard?key={KEY}&window=900")
        given = page_state(browser, "ready")
        assert given["kept"] == KEY and "key=" not in given["search"]  # taken out of the address bar
