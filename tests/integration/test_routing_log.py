"""The durable routing log over HTTP: exactly one record per request (concurrent ones too, across a clean restart),
filters, pagination, one decision explained, stats on known traffic, privacy and retention."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import lance
import numpy as np
import pyarrow.parquet as pq
import pytest
import structlog
from lance.dataset import DatasetOptimizer
from prometheus_client.parser import text_string_to_metric_families

from backends.lancedb import log_table
from bench.logreads import records
from router.cli import main
from router.lib.settings import Settings, get_settings
from router.routing.record import next_seq
from router.routing_log import store
from router.routing_log import table as routing_log
from router.routing_log.store import RoutingLog
from tests.conftest import S3_BUCKET, s3_options
from tests.integration.conftest import LiveService, serve

QUESTIONS = [
    "who wrote the novel pride and prejudice",
    "How do I serve several LoRA adapters with vLLM?",
    "What does the alpha parameter of LoRA control?",
    "when did the berlin wall fall",
    "Which film came out first, the one directed by the director of Alien or Blade Runner?",
    "what is the capital of australia",
]


def settings(tmp: Path, corpus_uri: str, **routing_log: Any) -> Settings:
    return Settings(
        retrieval={"uri": corpus_uri},
        thresholds={"uri": str(tmp / "thresholds")},
        routing_log={"uri": str(tmp / "routing-log")} | routing_log,
        log={"format": "json"},
    )


def send(client: httpx.Client, i: int, **body: Any) -> httpx.Response:
    endpoint = "/v1/route" if body.pop("decide_only", False) else "/v1/query"
    response = client.post(
        endpoint, json={"query": QUESTIONS[i % len(QUESTIONS)], **body}, headers={"X-Request-ID": f"req-{i:03d}"}
    )
    assert response.status_code == 200, response.text
    return response


def all_records(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    records, cursor = [], None
    while True:
        page = client.get("/v1/routing-logs", params={**params, **({"cursor": cursor} if cursor else {})}).json()
        records += page["records"]
        cursor = page["next_cursor"]
        if cursor is None:
            return records


def test_every_request_is_stored_once_also_concurrent_ones_and_across_a_clean_restart(
    tmp_path: Path, corpus_uri: str
) -> None:
    # a flush interval far longer than the test: only the clean stop can have written the last records
    config = settings(tmp_path, corpus_uri, flush_seconds=300)
    with serve(config) as live, httpx.Client(base_url=live.url, timeout=60) as client:
        for i in range(10):
            send(client, i, decide_only=i % 2 == 0)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: send(client, i), range(10, 40)))
        assert len(all_records(client, limit=7)) == 40  # reading flushes what is buffered
        for i in range(40, 50):
            send(client, i)  # buffered when the service stops
    with serve(config) as live, httpx.Client(base_url=live.url, timeout=60) as client:
        records = all_records(client, limit=500)
    ids = [r["request_id"] for r in records]
    assert sorted(ids) == [f"req-{i:03d}" for i in range(50)]  # exactly one record each, none lost
    assert [r["seq"] for r in records] == sorted((r["seq"] for r in records), key=int, reverse=True)


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory, corpus_uri: str) -> Any:
    """A service with known traffic: 12 policy-routed queries, 6 forced to ft, 4 forced to both, 6 decisions."""
    tmp = tmp_path_factory.mktemp("routing-log")
    with serve(settings(tmp, corpus_uri)) as live, httpx.Client(base_url=live.url, timeout=60) as client:
        for i in range(12):
            send(client, i)
        for i in range(12, 18):
            send(client, i, route="ft")
        for i in range(18, 22):
            send(client, i, route="both")
        for i in range(22, 28):
            send(client, i, decide_only=True)
        yield live, client


def test_filters_and_pages_on_known_traffic(traffic: tuple[LiveService, httpx.Client]) -> None:
    _, client = traffic
    everything = all_records(client, limit=5)
    assert len(everything) == 28 and len({r["request_id"] for r in everything}) == 28
    forced = Counter(r["route"] for r in everything if r["route_source"] == "request")
    assert forced == {"ft": 6, "both": 4}
    assert len(all_records(client, route="both")) == sum(r["route"] == "both" for r in everything)
    assert len(all_records(client, status="decided")) == 6
    assert len(all_records(client, status="answered")) == 22
    assert all_records(client, fallback=True) == []  # no LLM configured: extractive is the plan, not a fallback
    lora = all_records(client, text="LoRA")
    assert lora and all("LoRA" in r["query"] for r in lora)
    confident = all_records(client, min_ft=0.3)
    assert confident == [r for r in everything if r["scores"]["ft"] >= 0.3]
    first = everything[0]
    window = all_records(client, since=first["ts"], until="2100-01-01T00:00:00Z")
    assert first["request_id"] in {r["request_id"] for r in window}
    for bad in ({"route": "web"}, {"min_ft": 2}, {"since": "yesterday"}, {"limit": 0}, {"cursor": "abc"}):
        response = client.get("/v1/routing-logs", params=bad)
        assert response.status_code == 400, (bad, response.text)


def test_one_decision_is_explained(traffic: tuple[LiveService, httpx.Client]) -> None:
    _, client = traffic
    record = client.get("/v1/routing-logs/req-004").json()
    assert record["request_id"] == "req-004" and record["query"] == QUESTIONS[4]
    explanation = record["explanation"]
    assert explanation["chosen"] == record["route"] and explanation["chosen_by"] == "policy"
    utilities = {route: m["utility"] for route, m in explanation["margins"].items()}
    eligible = [route for route, m in explanation["margins"].items() if m["above_threshold"]] or list(utilities)
    assert record["route"] == max(eligible, key=lambda route: utilities[route])  # the policy, recomputed
    neighbours = explanation["neighbours"]
    assert len(neighbours) == 5 and all(n["best_route"] in {"ft", "rag", "both", None} for n in neighbours)
    assert [n["similarity"] for n in neighbours] == sorted((n["similarity"] for n in neighbours), reverse=True)
    assert client.get("/v1/routing-logs/nobody").status_code == 404


def test_stats_agree_with_the_records(traffic: tuple[LiveService, httpx.Client]) -> None:
    _, client = traffic
    stats = client.get("/v1/stats", params={"window": 3600, "buckets": 12}).json()
    records = all_records(client)
    assert stats["requests"] == len(records) == 28
    counts = Counter(r["route"] for r in records)
    assert stats["mix"] == {route: round(counts[route] / 28, 4) for route in ("ft", "rag", "both")}
    per_route = {route: sum(b["counts"][route] for b in stats["buckets"]) for route in ("ft", "rag", "both")}
    assert per_route == {route: counts[route] for route in ("ft", "rag", "both")}
    assert sum(b["requests"] for b in stats["buckets"]) == 28 and len(stats["buckets"]) == 12
    for route in ("ft", "rag", "both"):
        assert sum(stats["confidence"][route]["counts"]) == 28
    assert stats["latency_ms"]["total"]["p50"] > 0 and stats["latency_ms"]["retrieve"]["p50"] is not None
    assert stats["fallback_rate"] == 0.0 and stats["drift"] is None  # fewer than 200 records: no drift figure
    assert client.get("/v1/stats", params={"window": "1h", "buckets": 12}).json()["requests"] == 28
    for bad in ("10", "1y", "-5m", "100d"):
        assert client.get("/v1/stats", params={"window": bad}).status_code == 400, bad


def test_query_text_can_be_stored_hashed(tmp_path: Path, corpus_uri: str) -> None:
    with (
        serve(settings(tmp_path, corpus_uri, query_text="hash")) as live,
        httpx.Client(base_url=live.url, timeout=60) as client,
    ):
        send(client, 1, decide_only=True)
        (record,) = all_records(client)
    assert record["query"] == "sha256:" + hashlib.sha256(QUESTIONS[1].encode()).hexdigest()
    stored = b"".join(
        f.read_bytes() for f in (tmp_path / "routing-log" / "routing_log.lance").rglob("*") if f.is_file()
    )
    assert stored and QUESTIONS[1].encode() not in stored


def test_retention_keeps_the_newest_records(tmp_path: Path, corpus_uri: str) -> None:
    config = settings(tmp_path, corpus_uri)
    with serve(config) as live, httpx.Client(base_url=live.url, timeout=60) as client:
        for i in range(8):
            send(client, i, decide_only=True)
        all_records(client)  # flushed

    async def prune() -> int:
        log = await RoutingLog.open(str(tmp_path / "routing-log"), "routing_log", 384)
        removed = await log.prune(retention_days=None, max_records=5)
        return removed + 0 * await log.count()

    assert anyio.run(prune) == 3
    with serve(config) as live, httpx.Client(base_url=live.url, timeout=60) as client:
        kept = [r["request_id"] for r in all_records(client)]
    assert kept == [f"req-{i:03d}" for i in range(7, 2, -1)]


def test_the_flush_loop_compacts_appends_and_drops_old_versions(
    tmp_path: Path, corpus_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each flush is an append (a fragment and a version); without compaction they pile up and slow reads and grow
    memory. Every COMPACT_EVERY appends the loop merges them and removes versions past KEEP_VERSIONS."""
    monkeypatch.setattr(store, "COMPACT_EVERY", 5)
    monkeypatch.setattr(log_table, "KEEP_VERSIONS", timedelta(milliseconds=1))
    table = tmp_path / "routing-log" / "routing_log.lance"
    config = settings(tmp_path, corpus_uri, flush_seconds=0.02)
    with serve(config) as live, httpx.Client(base_url=live.url, timeout=60) as client:
        for i in range(23):
            send(client, i, decide_only=True)
            time.sleep(0.06)  # one flush each
        records = all_records(client)
    assert sorted(r["request_id"] for r in records) == [f"req-{i:03d}" for i in range(23)]
    dataset = lance.dataset(str(table))
    versions = [v["version"] for v in dataset.versions()]
    referenced = {
        Path(str(data.path)).name
        for version in versions
        for fragment in lance.dataset(str(table), version=version).get_fragments()
        for data in fragment.data_files()
    }
    # 23 appends (+ the close's empty flush): compacted at 5, 10, 15 and 20, so the table is the merged fragment, the
    # 3 appends after the last round and at most one that raced it (23 fragments without compaction)
    assert len(dataset.get_fragments()) <= 5, dataset.get_fragments()
    # a round keeps only its own versions (the next append rebases onto them; 24 versions without compaction), and
    # every data file left on disk belongs to one of them
    assert len(versions) <= 6, versions
    assert {f.name for f in (table / "data").glob("*.lance")} == referenced


def test_a_compaction_leaves_large_fragments_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a round rewrites is bounded by COMPACT_ROWS, not by the size of the log (LanceDB's own optimize rewrote
    every fragment under a million rows, the whole log, each time)."""
    monkeypatch.setattr(log_table, "COMPACT_ROWS", 20)

    def rows(n: int) -> list[dict[str, Any]]:
        return [record(f"r-{next_seq()}") for _ in range(n)]

    async def scenario() -> int:
        log = await RoutingLog.open(str(tmp_path), "routing_log", 384)
        for sizes in ([30], [2] * 6):  # one fragment already large enough, then six small ones
            for n in sizes:
                for row in rows(n):
                    log.append(row)
                await log.flush()
        await log.compact()
        return await log.count()

    assert anyio.run(scenario) == 42
    fragments = lance.dataset(str(tmp_path / "routing_log.lance")).get_fragments()
    # the 30-row fragment kept its id (it was not rewritten); the six small ones were merged into one
    assert [(f.fragment_id, f.count_rows()) for f in fragments] == [(0, 30), (7, 12)]


def test_a_compaction_keeps_indexes_on_the_read_columns(tmp_path: Path) -> None:
    """Pages, time windows and lookups by request id use B-tree indexes; each round adds the rows appended since the
    last one, and rows not indexed yet are still found."""

    async def scenario() -> tuple[dict[str, int], dict[str, int], list[str], int]:
        log = await RoutingLog.open(str(tmp_path), "routing_log", 384)
        for i in range(5):
            log.append(record(f"first-{i}"))
        await log.flush()
        await log.compact()
        first = indexed_rows(tmp_path)
        log.append(record("late"))
        await log.flush()
        found = [r["request_id"] for r in await log.get("late")]  # appended after the round: not indexed yet
        await log.compact()
        return first, indexed_rows(tmp_path), found, await log.count()

    first, second, found, count = anyio.run(scenario)
    assert first == dict.fromkeys(routing_log.INDEXED, 5)
    assert second == dict.fromkeys(routing_log.INDEXED, 6) and count == 6
    assert found == ["late"]


def test_retention_waits_for_a_compaction_round(tmp_path: Path) -> None:
    """A delete committed while a round rewrites the same fragment fails the round; at a million records, pruning
    every minute, that kept the indexes minutes behind. So retention waits for a round of this process to end."""
    entered, release = threading.Event(), threading.Event()
    order: list[str] = []

    async def scenario() -> tuple[dict[str, int], int]:
        log = await RoutingLog.open(str(tmp_path), "routing_log", 384)
        for i in range(8):
            log.append(record(f"r-{i}"))
            await log.flush()
        compact_files = log.table._compact_files

        def held(uri: str) -> tuple[int, int]:
            entered.set()
            release.wait(10)
            return compact_files(uri)

        log.table._compact_files = held  # type: ignore[method-assign]

        async def prune() -> None:
            await log.prune(None, 5)
            order.append("pruned")

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(log.compact)
            await anyio.to_thread.run_sync(entered.wait, 10)
            tasks.start_soon(prune)
            await anyio.sleep(0.3)
            order.append("round released")
            release.set()
        await log.compact()
        return indexed_rows(tmp_path), await log.count()

    indexed, count = anyio.run(scenario)
    assert order == ["round released", "pruned"]
    assert count == 5 and indexed == dict.fromkeys(routing_log.INDEXED, 5)


def test_a_round_whose_rewrite_fails_still_updates_the_indexes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Another replica's commit can win the race for the rewrite; the round logs it and still indexes the new rows,
    so reads do not fall back to scanning them."""

    async def scenario() -> dict[str, int]:
        log = await RoutingLog.open(str(tmp_path), "routing_log", 384)
        log.append(record("first"))
        await log.flush()
        await log.compact()
        monkeypatch.setattr(DatasetOptimizer, "compact_files", lambda *_, **__: (_ for _ in ()).throw(OSError("lost")))
        for i in range(3):
            log.append(record(f"r-{i}"))
            await log.flush()
        with structlog.testing.capture_logs() as logs:
            await log.compact()
        assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["routing_log_compaction_failed"]
        return indexed_rows(tmp_path)

    assert anyio.run(scenario) == dict.fromkeys(routing_log.INDEXED, 4)


def indexed_rows(directory: Path) -> dict[str, int]:
    dataset = lance.dataset(str(directory / "routing_log.lance"))
    return {index.field_names[0]: index.num_rows_indexed for index in dataset.describe_indices()}


def test_pages_find_the_newest_records_however_far_apart_they_are(tmp_path: Path) -> None:
    """find() searches the newest minute of seq first and widens the window; the pages must be exactly the records
    sorted newest first, whether they sit inside the first window, across several, or beyond the last."""
    now = time.time_ns() // 1_000 * 1_000
    ages = [0, 1, 30, 90, 600, 3_600, 7_200, 86_400 * 3, 86_400 * 30, 86_400 * 400]  # seconds
    rows = [
        record(f"age-{age}") | {"seq": now - age * 1_000_000_000 - i, "route": "rag" if i % 3 else "ft"}
        for i, age in enumerate(ages)
    ]

    async def pages(where: routing_log.LogFilter, limit: int) -> list[list[str]]:
        log = await RoutingLog.open(str(tmp_path), "routing_log", 384)
        found, cursor = [], None
        while True:
            page, cursor = await log.find(replace(where, before_seq=cursor), limit)
            found.append([r["request_id"] for r in page])
            if cursor is None:
                return found

    async def write() -> None:
        log = await RoutingLog.open(str(tmp_path), "routing_log", 384)
        for row in reversed(rows):
            log.append(row)
        await log.flush()

    anyio.run(write)
    everything = [f"age-{age}" for age in ages]
    assert anyio.run(pages, routing_log.LogFilter(), 3) == [
        everything[:3],
        everything[3:6],
        everything[6:9],
        everything[9:],
    ]
    assert [page[0] for page in anyio.run(pages, routing_log.LogFilter(), 1)] == everything
    assert anyio.run(pages, routing_log.LogFilter(), 50) == [everything]
    # a filter only old records match: found beyond the last window
    assert anyio.run(pages, routing_log.LogFilter(route="ft"), 2) == [["age-0", "age-90"], ["age-7200", "age-34560000"]]


def record(request_id: str) -> dict[str, Any]:
    """A routing record with every column filled, in the shape the service writes (the bench's generator)."""
    seq = np.array([next_seq()], dtype=np.int64)
    row: dict[str, Any] = records(routing_log.schema(384), seq, np.random.default_rng(0)).to_pylist()[0]
    return row | {"request_id": request_id}


def test_logs_cli_queries_tails_and_exports(
    traffic: tuple[LiveService, httpx.Client],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    live, client = traffic
    monkeypatch.setenv("ROUTER_ROUTING_LOG__URI", str(live.settings.routing_log.uri))
    get_settings.cache_clear()
    try:
        all_records(client)  # flushed
        assert main(["logs", "query", "--json", "--limit", "100", "--route", "ft"]) == 0
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert rows and all(r["route"] == "ft" for r in rows) and "vector" not in rows[0]
        assert main(["logs", "query", "--limit", "3"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 3 and "req-027" in lines[0]
        for name in ("all.jsonl", "all.parquet"):
            assert main(["logs", "export", "--out", str(tmp_path / name)]) == 0
            assert "28 records written" in capsys.readouterr().err
        exported = [json.loads(line) for line in (tmp_path / "all.jsonl").read_text().splitlines()]
        assert [r["request_id"] for r in exported] == [f"req-{i:03d}" for i in range(28)]  # oldest first
        assert pq.read_table(tmp_path / "all.parquet").num_rows == 28
        later = threading.Timer(0.5, lambda: [send(client, i, decide_only=True) for i in range(100, 103)])
        later.start()
        assert main(["logs", "tail", "--last", "1", "--count", "3", "--interval", "0.2", "--json"]) == 0
        later.join()
        tailed = [json.loads(line)["request_id"] for line in capsys.readouterr().out.splitlines()]
        assert tailed == ["req-027", "req-100", "req-101", "req-102"]
    finally:
        get_settings.cache_clear()


def test_two_instances_log_to_one_table_on_object_storage(tmp_path: Path, corpus_uri: str, s3_endpoint: str) -> None:
    shared = {"uri": f"s3://{S3_BUCKET}/routing-{uuid.uuid4().hex}", "storage_options": s3_options(s3_endpoint)}
    with (
        serve(settings(tmp_path / "a", corpus_uri, **shared)) as a,
        serve(settings(tmp_path / "b", corpus_uri, **shared)) as b,
        httpx.Client(base_url=a.url, timeout=60) as client_a,
        httpx.Client(base_url=b.url, timeout=60) as client_b,
    ):
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: send(client_a if i % 2 else client_b, i, decide_only=True), range(12)))
        client_b.get("/v1/routing-logs")  # b's buffer written
        ids = sorted(r["request_id"] for r in all_records(client_a))
    assert ids == [f"req-{i:03d}" for i in range(12)]  # a sees b's records in the shared table


def test_two_replicas_compact_one_table_on_object_storage(s3_endpoint: str) -> None:
    """Each replica compacts on its own count, so two rounds can meet on the shared table: neither may lose or
    duplicate a record, a round that loses the commit race is retried by the next, and the indexes end up whole."""
    uri, options = f"s3://{S3_BUCKET}/compact-{uuid.uuid4().hex}", s3_options(s3_endpoint)

    async def open_log(dimension: int | None = 384) -> RoutingLog:
        return await RoutingLog.open(
            uri, "routing_log", dimension, storage_options=options, read_consistency=timedelta(0)
        )

    async def scenario() -> tuple[list[str], list[str], dict[str, int], list[int]]:
        a, b = await open_log(), await open_log()
        for i in range(6):
            a.append(record(f"a-{i}"))
            b.append(record(f"b-{i}"))
            await a.flush()
            await b.flush()
        async with anyio.create_task_group() as rounds:  # both replicas reach COMPACT_EVERY at the same moment
            rounds.start_soon(a.compact)
            rounds.start_soon(b.compact)
        b.append(record("b-late"))
        await b.flush()
        await a.compact()
        reader = await open_log(None)
        page, _ = await reader.find(routing_log.LogFilter(), 100)
        found = [r["request_id"] for r in await reader.get("a-3")]
        dataset = lance.dataset(uri + "/routing_log.lance", storage_options=options)
        indexed = {index.field_names[0]: index.num_rows_indexed for index in dataset.describe_indices()}
        return [r["request_id"] for r in page], found, indexed, [f.count_rows() for f in dataset.get_fragments()]

    ids, found, indexed, fragments = anyio.run(scenario)
    assert sorted(ids) == sorted([f"a-{i}" for i in range(6)] + [f"b-{i}" for i in range(6)] + ["b-late"])
    assert ids[0] == "b-late" and found == ["a-3"]
    assert indexed == dict.fromkeys(routing_log.INDEXED, 13)
    # the twelve merged by the round that won; b-late stays apart (Lance merges indexed fragments only with each
    # other, so it joins them in a later round, once indexed)
    assert fragments == [12, 1]


def test_logs_stats_and_metrics_agree(traffic: tuple[LiveService, httpx.Client]) -> None:
    _, client = traffic
    records = all_records(client)
    stats = client.get("/v1/stats", params={"window": "1h"}).json()
    scraped: Counter[tuple[str, str]] = Counter()
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "router_decisions_total":
                scraped[(sample.labels["route"], sample.labels["status"])] += int(sample.value)
    logged = Counter((r["route"], r["status"]) for r in records)
    assert +scraped == logged  # the same decisions, counted the same way
    assert stats["requests"] == len(records) == sum(scraped.values())
    routes = Counter(r["route"] for r in records)
    assert stats["mix"] == {route: round(routes[route] / len(records), 4) for route in ("ft", "rag", "both")}
