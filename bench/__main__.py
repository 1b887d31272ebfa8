"""The performance benchmarks: ``python -m bench`` (or ``make bench``). Prints a table, writes JSON.

Every figure is measured next to its reference in the same run (the raw embedding of the same queries, exact
search on the same table, the peer on the same encoder), and reported as a ratio as well as milliseconds, because
this machine is noisy. Latencies are min / median / p99 over repeats.

Cases (``--cases``, default all):
  embed      raw in-process embedding of one query with the configured backend (the floor), and batched
  route      POST /v1/route over loopback HTTP, one client, against the raw embedding of the same queries
  load       /v1/route under 32 concurrent clients, then an open-loop load at half that throughput
  query      /v1/query (extractive generator) on a 100k-chunk table: latency per stage
  retrieval  LanceDB search at 100k and 1M generated chunks (``--quick``: 100k only): latency, recall@10
  logs       routing-log reads at 100k and 1M generated records (``--quick``: 100k only): a page, a lookup by
             request id and the drift sample, next to the whole-column reads they replaced
  start      cold start to ready, and resident memory at idle and under load
  peer       the same decision through aurelio's semantic-router with the same encoder (its own virtualenv)
  soak       not in the default run: /v1/route at saturation for ``--soak-seconds`` (default 600), sampling the
             service's resident memory, the routing log's files and a log read; then one record per answer.
             ``--soak-prefill N`` starts the service on a routing log already holding N generated records
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench import corpus, loadgen
from bench.service import ROOT, serve
from bench.timing import stats, timed

CASES = ("embed", "route", "load", "query", "retrieval", "logs", "start", "peer")
EXTRA_CASES = ("soak",)
SOAK_CLIENTS = 64
SOAK_WINDOW_S = 20.0
CLIENTS = 32
RAW_BATCH_SIZES = (8, 16, 32)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        from models.embedder import load_embedder

        self.args = args
        self.results: dict[str, Any] = {}
        self.rows: list[tuple[str, str, str, str, str]] = []  # case, figure, value, reference / ratio, target
        self.embedder = load_embedder()
        self.questions = corpus.questions()
        self.payloads = [{"query": q} for q in self.questions]

    def row(self, case: str, figure: str, value: str, reference: str = "", target: str = "") -> None:
        self.rows.append((case, figure, value, reference, target))
        print(f"  {figure}: {value}  {reference}  {target}".rstrip(), flush=True)

    def raw_single(self, repeats: int) -> dict[str, float]:
        """One query at a time, cycling through the questions, in this process."""
        texts = iter(self.questions * (repeats // len(self.questions) + 2))
        return stats(timed(lambda: self.embedder.encode([next(texts)]), repeats))

    def raw_batched(self, seconds: float, batch: int) -> tuple[float, float]:
        """(queries per second, CPU ms per query) embedding batches of ``batch`` different questions."""
        done, start, i, cpu = 0, time.perf_counter(), 0, time.process_time()
        while time.perf_counter() - start < seconds:
            texts = [self.questions[(i + j) % len(self.questions)] for j in range(batch)]
            self.embedder.encode(texts)
            done, i = done + batch, i + batch
        return done / (time.perf_counter() - start), (time.process_time() - cpu) / done * 1000

    def raw_batched_best(self, seconds: float = 4.0) -> tuple[int, dict[int, tuple[float, float]]]:
        """The batch size with the best raw throughput, and every size's (queries/s, CPU ms a query): smaller
        batches pad less, and on this CPU 8 questions a pass embed faster per query than 32."""
        by_size = {size: self.raw_batched(seconds, size) for size in RAW_BATCH_SIZES}
        return max(by_size, key=lambda size: by_size[size][0]), by_size

    # -- cases ---------------------------------------------------------------------------------------------------

    def case_embed(self) -> None:
        from models.embedder import SentenceTransformerEmbedder, load_embedder

        single = self.raw_single(300)
        batch, by_size = self.raw_batched_best()
        batched = by_size[batch][0]
        torch_embedder = SentenceTransformerEmbedder.load()
        texts = iter(self.questions * 2)
        torch_single = stats(timed(lambda: torch_embedder.encode([next(texts)]), 200))
        int8 = load_embedder(precision="int8")
        texts = iter(self.questions * 2)
        int8_single = stats(timed(lambda: int8.encode([next(texts)]), 300))
        reference = torch_embedder.encode(self.questions)
        cosine_fp32 = np.sum(self.embedder.encode(self.questions) * reference, axis=1)
        cosine_int8 = np.sum(int8.encode(self.questions) * reference, axis=1)
        self.results["embed"] = {
            "onnx_fp32": single,
            "onnx_fp32_batched_qps": round(batched, 1),
            "onnx_fp32_batched_best_size": batch,
            "onnx_fp32_batched_qps_by_size": {str(k): round(v[0], 1) for k, v in by_size.items()},
            "torch": torch_single,
            "onnx_int8": int8_single,
            "cosine_to_torch": {
                "fp32_min": round(float(cosine_fp32.min()), 6),
                "int8_mean": round(float(cosine_int8.mean()), 4),
                "int8_min": round(float(cosine_int8.min()), 4),
            },
        }
        p50 = single["p50_ms"]
        self.row("embed", "one query, ONNX fp32 (the floor)", _lat(single))
        self.row("embed", "one query, torch", _lat(torch_single), f"{torch_single['p50_ms'] / p50:.2f}x the floor")
        self.row("embed", "one query, ONNX int8", _lat(int8_single), f"{int8_single['p50_ms'] / p50:.2f}x the floor")
        self.row(
            "embed",
            "batched, ONNX fp32",
            f"{batched:.0f} queries/s",
            ", ".join(f"{size} a pass {qps:.0f}/s" for size, (qps, _) in by_size.items()),
        )
        self.row(
            "embed",
            "cosine to torch",
            f"fp32 min {cosine_fp32.min():.6f}; int8 mean {cosine_int8.mean():.4f} min {cosine_int8.min():.4f}",
        )

    def case_route(self) -> None:
        with serve() as service:
            http, raw = asyncio.run(self._route_vs_raw(service.port))
        http_stats, raw_stats = stats(http), stats(raw)
        ratio = http_stats["p50_ms"] / raw_stats["p50_ms"]
        self.results["route"] = {"http": http_stats, "raw_embed": raw_stats, "ratio_p50": round(ratio, 2)}
        self.row("route", "POST /v1/route, one client", _lat(http_stats), f"{ratio:.2f}x raw embed", "<= 1.5x")

    async def _route_vs_raw(self, port: int, rounds: int = 5, per_round: int = 80) -> tuple[list[float], list[float]]:
        """Alternates rounds of HTTP requests and raw embeddings of the same questions, so that drift in the
        machine's speed hits both alike."""
        conn = loadgen.Connection("127.0.0.1", port)
        http: list[float] = []
        raw: list[float] = []
        await conn.post("/v1/route", self.payloads[0])
        for r in range(rounds):
            batch = self.questions[r * per_round : (r + 1) * per_round]
            for question in batch:
                start = time.perf_counter()
                status, body = await conn.post("/v1/route", {"query": question})
                http.append(time.perf_counter() - start)
                if status != 200:
                    raise RuntimeError(f"/v1/route answered {status}: {body[:200]!r}")
            for question in batch:
                start = time.perf_counter()
                self.embedder.encode([question])
                raw.append(time.perf_counter() - start)
        await conn.close()
        return http, raw

    def case_load(self) -> None:
        raw_batch, by_size = self.raw_batched_best()
        raw_qps, raw_cpu_ms = by_size[raw_batch]
        with serve() as service:
            host, port = "127.0.0.1", service.port
            asyncio.run(loadgen.closed_loop(host, port, "/v1/route", self.payloads, clients=CLIENTS, seconds=2))
            server_cpu = service.cpu_seconds()
            run = asyncio.run(
                loadgen.closed_loop(host, port, "/v1/route", self.payloads, clients=CLIENTS, seconds=self.args.seconds)
            )
            server_cpu = service.cpu_seconds() - server_cpu
            peak = service.rss_mib()
            single = stats(
                asyncio.run(loadgen.closed_loop(host, port, "/v1/route", self.payloads, clients=1, seconds=3)).latencies
            )
            rate = run.throughput / 2
            open_run = asyncio.run(
                loadgen.open_loop(host, port, "/v1/route", self.payloads, rate=rate, seconds=self.args.seconds)
            )
        closed, opened = stats(run.latencies), stats(open_run.latencies)
        implied = CLIENTS / run.throughput * 1000
        self.results["load"] = {
            "clients": CLIENTS,
            "throughput": round(run.throughput, 1),
            "raw_batched_qps": round(raw_qps, 1),
            "raw_batched_size": raw_batch,
            "ratio_throughput": round(run.throughput / raw_qps, 2),
            "latency": closed,
            "implied_mean_ms": round(implied, 2),
            "ratio_p99_to_implied": round(closed["p99_ms"] / implied, 2),
            "statuses": run.statuses,
            "errors": run.errors,
            "open_loop": {
                "rate": round(rate, 1),
                "latency": opened,
                "single_p50_ms": single["p50_ms"],
                "ratio_p99_to_single_p50": round(opened["p99_ms"] / single["p50_ms"], 2),
                "statuses": open_run.statuses,
                "errors": open_run.errors,
            },
            "rss_peak_mib": round(peak[1], 1),
            # where the 2 cores went during the closed-loop phase: the service per request, and the load generator
            "server_cpu_ms_per_request": round(server_cpu / len(run.latencies) * 1000, 2),
            "client_cpu_ms_per_request": round(run.client_cpu_seconds / len(run.latencies) * 1000, 2),
            "raw_batched_cpu_ms_per_query": round(raw_cpu_ms, 2),
        }
        self.row(
            "load",
            f"/v1/route, {CLIENTS} clients",
            f"{run.throughput:.0f} req/s",
            f"{run.throughput / raw_qps:.2f}x raw batched ({raw_qps:.0f}/s, {raw_batch} a pass)",
            ">= 0.7x",
        )
        self.row(
            "load",
            f"/v1/route, {CLIENTS} clients: latency",
            _lat(closed),
            f"p99 {closed['p99_ms'] / implied:.2f}x implied mean {implied:.1f} ms",
            "<= 1.5x",
        )
        self.row(
            "load",
            f"open loop at {rate:.0f} req/s",
            _lat(opened),
            f"p99 {opened['p99_ms'] / single['p50_ms']:.2f}x single p50 {single['p50_ms']:.1f} ms",
            "<= 3x",
        )
        bad = {k: v for k, v in {**run.statuses, **open_run.statuses}.items() if k != 200}
        self.row("load", "non-200 answers, errors", f"{bad or 'none'}, {run.errors + open_run.errors}")

    def case_query(self) -> None:
        table = asyncio.run(corpus.document_table(self.embedder, 100_000))
        with (
            serve({"ROUTER_RETRIEVAL__URI": str(table)}) as service,
            httpx.Client(base_url=f"http://127.0.0.1:{service.port}") as client,
        ):
            timings: list[dict[str, float]] = []
            payloads = iter(self.payloads * 3)

            def ask() -> None:
                answer = client.post("/v1/query", json=next(payloads)).raise_for_status().json()
                timings.append(answer["timings_ms"])

            http = timed(ask, 400)
        overall = stats(http)
        stages = {k: round(statistics.median(t.get(k, 0.0) for t in timings), 2) for k in timings[-1]}
        self.results["query"] = {"chunks": 100_000, "http": overall, "stages_p50_ms": stages}
        self.row("query", "POST /v1/query, 100k chunks, extractive", _lat(overall), "", "p50 <= 20 ms")
        self.row("query", "  stages (p50 ms)", ", ".join(f"{k} {v}" for k, v in stages.items()))

    def case_retrieval(self) -> None:
        sizes = (100_000,) if self.args.quick else (100_000, 1_000_000)
        _, queries = corpus.query_vectors(self.embedder)
        self.results["retrieval"] = {}
        for rows in sizes:
            self.results["retrieval"][str(rows)] = figures = asyncio.run(self._retrieval(rows, queries))
            self.row(
                "retrieval",
                f"LanceDB IVF_SQ, {rows:,} chunks",
                _lat(figures["ann"]),
                f"recall@10 {figures['recall_at_10']:.3f}; exact {figures['exact']['p50_ms']:.0f} ms",
                "p50 <= 10 ms, recall >= 0.95" if rows == 1_000_000 else "",
            )

    async def _retrieval(self, rows: int, queries: np.ndarray) -> dict[str, Any]:
        from backends.lancedb import DocumentStore

        table = await corpus.document_table(self.embedder, rows)
        store = await DocumentStore.open(str(table), "chunks", self.embedder.dimension)
        ann, exact, hits, found = [], [], [], []
        for vector in queries[:200]:
            start = time.perf_counter()
            found.append(await store.search(vector, 10))
            ann.append(time.perf_counter() - start)
        # exhaustive search is the slow part at 1M, so 50 queries; in a pass of its own, because a scan of the whole
        # table between two searches evicts what they share from the caches and slows the next one by ~4 ms
        for vector, passages in zip(queries[:50], found, strict=False):
            start = time.perf_counter()
            truth = await store.exact_search(vector, 10)
            exact.append(time.perf_counter() - start)
            hits.append(len({p.chunk_id for p in passages} & {p.chunk_id for p in truth}) / 10)
        return {"ann": stats(ann[1:]), "exact": stats(exact), "recall_at_10": round(float(np.mean(hits)), 4)}

    def case_logs(self) -> None:
        from bench import logreads

        self.results["logs"] = {}
        for rows in (100_000,) if self.args.quick else (100_000, 1_000_000):
            figures = asyncio.run(logreads.measure(rows, self.embedder.dimension))
            self.results["logs"][str(rows)] = figures
            whole, hour = figures["reference_whole_seq_column"], figures["reference_hour_of_seq"]
            self.row("logs", f"page of 50, {rows:,} records", _lat(figures["page"]), f"whole seq column {_lat(whole)}")
            self.row("logs", "  next page (cursor)", _lat(figures["next_page"]))
            self.row("logs", "  page, route filter", _lat(figures["page_route_filter"]))
            self.row("logs", "  lookup by request id", _lat(figures["lookup"]))
            drift = _lat(figures["drift_sample"])
            self.row("logs", "  drift sample (newest 5,000)", drift, f"hour of seq {_lat(hour)}")
            self.row("logs", "  first compaction (builds indexes)", f"{figures['first_compaction_s']:.1f} s")

    def case_start(self) -> None:
        starts, idle = [], []
        for _ in range(3):
            with serve() as service:
                starts.append(service.ready_seconds)
                with httpx.Client(base_url=f"http://127.0.0.1:{service.port}") as client:
                    for payload in self.payloads[:50]:
                        client.post("/v1/route", json=payload).raise_for_status()
                time.sleep(1)
                idle.append(service.rss_mib()[0])
        self.results["start"] = {
            "ready_seconds": [round(s, 2) for s in starts],
            "rss_idle_mib": round(max(idle), 1),
        }
        self.row("start", "cold start to ready", f"median {statistics.median(starts):.2f} s", "", "<= 5 s")
        self.row("start", "resident memory at idle", f"{max(idle):.0f} MiB", "", "<= 1024 MiB")
        if "load" in self.results:
            self.row("start", "resident memory, peak under load", f"{self.results['load']['rss_peak_mib']:.0f} MiB")

    def case_peer(self) -> None:
        venv = ROOT / "var" / "bench" / "peer-venv"
        python = venv / "bin" / "python"
        if not python.exists():
            print("  installing semantic-router into var/bench/peer-venv (once) ...", flush=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            packages = ["semantic-router>=0.1", "onnxruntime", "tokenizers", "numpy"]
            subprocess.run([str(python), "-m", "pip", "install", "--quiet", *packages], check=True)
        env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"}
        out = subprocess.run(
            [str(python), "-m", "bench.peer", str(self.embedder.path)],  # type: ignore[attr-defined]
            cwd=ROOT, env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        peer = json.loads(out.stdout.strip().splitlines()[-1])
        self.results["peer"] = peer
        ours, theirs = peer["ours"], peer["semantic_router"]
        self.row(
            "peer",
            "decision in-process, ours (embed + classify + policy)",
            _lat(ours),
            f"{ours['p50_ms'] / theirs['p50_ms']:.2f}x semantic-router",
            "< 1x",
        )
        self.row("peer", f"decision, semantic-router {peer['version']} (same encoder)", _lat(theirs))
        self.row("peer", "  routing overhead beyond the embedding (p50)", peer["overhead_note"])

    def case_soak(self) -> None:
        seconds, prefilled = self.args.soak_seconds, self.args.soak_prefill
        with tempfile.TemporaryDirectory(prefix="router-soak-") as tmp:
            table_dir = Path(tmp) / "routing_log.lance"
            if prefilled:  # the service starts on a table that already holds this many records
                from bench import logreads

                async def fill() -> None:  # and indexed, as the service that wrote them would have left them
                    await (await logreads.prefill(tmp, prefilled, self.embedder.dimension)).compact()

                asyncio.run(fill())
            with (
                serve({"ROUTER_ROUTING_LOG__URI": tmp}) as service,
                httpx.Client(base_url=f"http://127.0.0.1:{service.port}") as client,
            ):
                samples: list[dict[str, Any]] = []
                answered, statuses, errors, started = 0, dict[int, int](), 0, time.perf_counter()
                while (elapsed := time.perf_counter() - started) < seconds:
                    window = min(SOAK_WINDOW_S, seconds - elapsed)
                    run = asyncio.run(
                        loadgen.closed_loop(
                            "127.0.0.1", service.port, "/v1/route", self.payloads, clients=SOAK_CLIENTS, seconds=window
                        )
                    )
                    answered += run.statuses.get(200, 0)
                    errors += run.errors
                    for status, n in run.statuses.items():
                        statuses[status] = statuses.get(status, 0) + n
                    read = stats(timed(lambda: client.get("/v1/routing-logs?limit=50").raise_for_status(), 3))
                    samples.append(
                        {
                            "seconds": round(time.perf_counter() - started, 1),
                            "rss_mib": round(service.rss_mib()[0], 1),
                            "anonymous_mib": round(service.anonymous_mib(), 1),
                            "req_per_s": round(run.throughput, 1),
                            "fragments": sum(1 for _ in (table_dir / "data").glob("*")),
                            "versions": sum(1 for _ in (table_dir / "_versions").glob("*")),
                            "read_p50_ms": read["p50_ms"],
                        }
                    )
                    print(f"  {samples[-1]}", flush=True)
                started_stats = time.perf_counter()
                window = client.get("/v1/stats?window=1h", timeout=120).raise_for_status().json()
                stats_seconds = time.perf_counter() - started_stats
            records = asyncio.run(_count_rows(tmp, "routing_log"))  # after the stop's flush
        late = [s for s in samples if s["seconds"] >= seconds / 2]
        minutes = np.array([s["seconds"] for s in late]) / 60

        def slope(key: str) -> float:
            return float(np.polyfit(minutes, [s[key] for s in late], 1)[0]) if len(late) > 1 else 0.0

        self.results["soak"] = {
            "seconds": seconds,
            "prefilled_records": prefilled,
            "clients": SOAK_CLIENTS,
            "answered": answered,
            "records": records,
            "statuses": statuses,
            "errors": errors,
            "rss_slope_mib_per_min_second_half": round(slope("rss_mib"), 2),
            "anonymous_slope_mib_per_min_second_half": round(slope("anonymous_mib"), 2),
            "stats_1h": {"seconds": round(stats_seconds, 2), "requests": window["requests"], "drift": window["drift"]},
            "samples": samples,
        }
        first, last = samples[0], samples[-1]
        self.row("soak", f"/v1/route, {SOAK_CLIENTS} clients for {seconds:.0f} s", f"{answered / seconds:.0f} req/s")
        for key, name in (("rss_mib", "resident memory"), ("anonymous_mib", "  of it anonymous (heap, stacks)")):
            self.row(
                "soak",
                name,
                f"{first[key]:.0f} -> {max(s[key] for s in samples):.0f} (peak) -> {last[key]:.0f} MiB",
                f"{slope(key):+.2f} MiB/min over the second half",
                "flat: |slope| <= 1 MiB/min",
            )
        self.row(
            "soak",
            "routing log: data files, versions, read of 50",
            f"max {max(s['fragments'] for s in samples)}, max {max(s['versions'] for s in samples)}, "
            f"{first['read_p50_ms']:.0f} -> {last['read_p50_ms']:.0f} ms",
        )
        drift = window["drift"]["index"] if window["drift"] else None
        self.row("soak", "GET /v1/stats?window=1h at the end", f"{stats_seconds * 1000:.0f} ms",
                 f"{window['requests']} records, drift index {drift}")  # fmt: skip
        bad = {k: v for k, v in statuses.items() if k != 200}
        others = f"non-200 {bad or 'none'}, errors {errors}"
        pruned = "ROUTER_ROUTING_LOG__MAX_RECORDS" in os.environ  # retention deletes records on purpose then
        self.row("soak", "records, answers", f"{records}, {answered}", others, "<= (pruned)" if pruned else "equal")

    # -- output --------------------------------------------------------------------------------------------------

    def table(self) -> str:
        header = ("case", "figure", "value (min / p50 / p99)", "reference", "target")
        widths = [max(len(r[i]) for r in [header, *self.rows]) for i in range(5)]
        lines = [" | ".join(c.ljust(w) for c, w in zip(header, widths, strict=True))]
        lines.append("-+-".join("-" * w for w in widths))
        lines += [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in self.rows]
        return "\n".join(lines)


async def _count_rows(uri: str, table: str) -> int:
    """Records the service wrote (not the generated ones of ``--soak-prefill``)."""
    from bench.logreads import PREFILLED
    from router.routing_log.store import RoutingLog

    log = await RoutingLog.open(uri, table, None)
    return len(await log.column("seq", f"model_version != '{PREFILLED}'"))


def _lat(s: dict[str, float]) -> str:
    return f"{s['min_ms']:.2f} / {s['p50_ms']:.2f} / {s['p99_ms']:.2f} ms"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cases", default=",".join(CASES), help=f"comma-separated, from: {', '.join(CASES + EXTRA_CASES)}"
    )
    parser.add_argument("--quick", action="store_true", help="retrieval at 100k only (1M takes minutes to build)")
    parser.add_argument("--seconds", type=float, default=15.0, help="duration of each load phase")
    parser.add_argument("--soak-seconds", type=float, default=600.0, help="duration of the soak case")
    parser.add_argument(
        "--soak-prefill", type=int, default=0, help="generated records in the routing log before the soak starts"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json", help="JSON results")
    args = parser.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(cases) - set(CASES + EXTRA_CASES)
    if unknown:
        parser.error(f"unknown cases: {', '.join(sorted(unknown))}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    bench = Bench(args)
    started = time.perf_counter()
    for case in cases:
        print(f"[{case}]", flush=True)
        getattr(bench, f"case_{case}")()
    print()
    print(bench.table())
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "embedder": {"name": bench.embedder.name, "backend": type(bench.embedder).__name__},
        "seconds": round(time.perf_counter() - started, 1),
        "results": bench.results,
        "table": [dict(zip(("case", "figure", "value", "reference", "target"), r, strict=True)) for r in bench.rows],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
