"""The ``router`` command (also ``python -m router``): serve, ingest, label, train, eval, thresholds, logs.

Settings come from ``ROUTER_*`` environment variables; flags given here override them for one run.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

from router.cli import routing_log as logs_cli
from router.cli import thresholds as thresholds_cli
from router.lib.settings import Settings, get_settings

M_ARENA_MAX = -8  # from glibc's malloc.h
MALLOC_ARENAS = 2
"""glibc gives each thread that allocates its own malloc arena (up to 8 per core). The Arrow and LanceDB threads
that write the routing log then leave freed memory scattered over many arenas, and the process grows: in a soak at
one append a second, 450-510 MiB after 6,000 appends against 285-300 MiB with two arenas, at the same speed."""


def _cap_malloc_arenas() -> None:
    """``MALLOC_ARENA_MAX`` for this process, set before the worker threads start (a no-op off glibc, and where
    the environment already sets it)."""
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl, for one)
        return
    libc.mallopt(M_ARENA_MAX, MALLOC_ARENAS)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    _cap_malloc_arenas()
    import uvicorn

    from models.bundle import load_bundle, load_thresholds
    from router.server.app import create_app

    load_bundle(settings.model.bundle_dir)  # fail fast, with a one-line message naming the file
    load_thresholds(settings.thresholds_path)
    host = args.host or settings.server.host
    port = args.port or settings.server.port
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None, access_log=False)
    return 0


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    from router.documents.ingestion import ingest
    from router.server.resources import open_embedder, open_store

    async def run() -> dict[str, int]:
        embedder = await open_embedder(settings)
        store = await open_store(settings, embedder.dimension)
        cfg = settings.retrieval
        report = await ingest(
            args.paths,
            store,
            embedder,
            max_chars=cfg.chunk_max_chars,
            overlap_chars=cfg.chunk_overlap_chars,
            progress=not args.quiet,
        )
        return report.counts()

    report = asyncio.run(run())
    print(json.dumps(report) if args.json else " ".join(f"{k}={v}" for k, v in report.items()))
    return 0


def _label(args: argparse.Namespace, settings: Settings) -> int:
    from contextlib import AsyncExitStack

    from router.cli.labelling import Labeller, label, read_questions
    from router.server.resources import build_llm, open_embedder, open_store

    if not settings.llm.base_url:
        print(
            "router label: error: set ROUTER_LLM__BASE_URL (and the model names) to label with real answers",
            file=sys.stderr,
        )
        return 2
    questions = read_questions(args.questions)

    async def run() -> dict[str, Any]:
        embedder = await open_embedder(settings)
        store = await open_store(settings, embedder.dimension)
        async with AsyncExitStack() as stack:
            llm = build_llm(settings, stack)
            if llm is None:  # unreachable: base_url was checked above
                raise RuntimeError("no LLM configured")
            labeller = Labeller(store, embedder, llm, args.top_k or settings.retrieval.top_k, args.split)
            report = await label(questions, labeller, args.out, concurrency=args.concurrency, progress=not args.quiet)
        return asdict(report)

    report = asyncio.run(run())
    print(json.dumps(report))
    return 1 if report["failed"] else 0


def _train(args: argparse.Namespace, settings: Settings) -> int:
    from models.outcomes import load_outcomes
    from models.training import TrainOptions, train_bundle
    from router.server.resources import embedder_from

    outcomes = load_outcomes(args.outcomes, args.split)
    embedder = embedder_from(settings)
    options = TrainOptions(calibration=args.calibration, folds=args.folds, max_cost=args.max_cost, seed=args.seed)
    out = args.out or settings.model.bundle_dir
    bundle, policy = train_bundle(outcomes, args.split, embedder, out, options, progress=True)
    metrics = bundle.manifest["metrics"]
    print(f"bundle {bundle.version} written to {out}")
    print(f"calibration: {bundle.manifest['calibration']} (out-of-fold Brier {metrics['brier_by_calibration']})")
    print(f"policy: thresholds {policy.thresholds.as_dict()}, cost_weight {policy.cost_weight:g}")
    print(f"out-of-fold routed: {json.dumps(metrics['routed'])}")
    for route, values in metrics["routes"].items():
        print(f"  {route:5} " + " ".join(f"{k}={v}" for k, v in values.items() if k != "reliability"))
    return 0


def _eval(args: argparse.Namespace, settings: Settings) -> int:
    import numpy as np

    from models.bundle import load_bundle, load_thresholds, record_evaluation
    from models.evaluation import EvalData, evaluate
    from models.outcomes import load_outcomes
    from models.report import write_report
    from models.robustness import Probe
    from models.training import fitter
    from router.server.resources import embedder_from

    directory = args.model or settings.model.bundle_dir
    bundle = load_bundle(directory)
    policy = bundle.policy(load_thresholds(args.thresholds or directory / "thresholds.json"))
    test = load_outcomes(args.outcomes, args.split)
    train = load_outcomes(args.outcomes, args.train_split)
    embedder = embedder_from(settings)
    progress = not args.json
    data = EvalData(
        test=test,
        test_x=embedder.encode(test.questions, progress=progress).astype(np.float64),
        train=train,
        train_x=embedder.encode(train.questions, progress=progress).astype(np.float64),
    )
    fit = None if args.skip_lodo else fitter(bundle)
    encode = partial(embedder.encode, progress=progress)
    probe = Probe(encode, args.robustness_sample) if args.robustness else None
    report = evaluate(bundle, policy, data, fit=fit, resamples=args.resamples, progress=progress, probe=probe)
    if args.out:
        path = write_report(report, args.out)
        print(f"report written to {path}", file=sys.stderr)
    if args.record:
        record_evaluation(directory, args.split, report)
        print(f"headline figures recorded in {directory / 'manifest.json'}", file=sys.stderr)
    print(json.dumps(report) if args.json else _summary(report))
    return 0


def _embedder(args: argparse.Namespace, settings: Settings) -> int:
    from models.embedder import default_onnx_dir, export_onnx

    cfg = settings.embedder
    configured = cfg.onnx_dir or default_onnx_dir(cfg.path)
    directory = args.out or configured
    manifest = export_onnx(cfg.path, directory, int8=args.int8 or cfg.precision == "int8")
    print(f"{manifest['name']} exported to {directory} ({', '.join(manifest['precisions'])})")
    for precision, figures in manifest["agreement"].items():
        print(
            f"  {precision}: cosine to sentence-transformers mean {figures['mean_cosine']} min {figures['min_cosine']}"
        )
    if directory != configured:
        print(f"serve it with ROUTER_EMBEDDER__ONNX_DIR={directory}")
    return 0


def _summary(report: dict[str, Any]) -> str:
    from models.report import render_markdown

    return render_markdown(report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="router", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    ingest = sub.add_parser("ingest", help="chunk, embed and store documents (.md, .txt, .jsonl, directories)")
    ingest.add_argument("paths", nargs="+", type=Path)
    ingest.add_argument("--json", action="store_true", help="print the report as JSON")
    ingest.add_argument("--quiet", action="store_true", help="no progress bar")
    label = sub.add_parser("label", help="answer questions through every route and write an outcomes file")
    label.add_argument("--questions", type=Path, required=True, help='JSONL: {"id"?, "question", "answers": [...]}')
    label.add_argument("--out", type=Path, required=True, help="outcomes JSONL (appended to; resumable)")
    label.add_argument("--split", default="dev_500", help="split name written on each row (router train's default)")
    label.add_argument("--concurrency", type=int, default=4, help="questions in flight at once")
    label.add_argument("--top-k", type=int, help="passages retrieved (default: retrieval.top_k)")
    label.add_argument("--quiet", action="store_true", help="no progress bar")
    train = sub.add_parser("train", help="train a route classifier bundle from an outcomes file")
    train.add_argument("--outcomes", type=Path, required=True)
    train.add_argument("--split", default="dev_500")
    train.add_argument("--out", type=Path, help="bundle directory (default: model.bundle_dir)")
    train.add_argument("--calibration", choices=["auto", "sigmoid", "isotonic"], default="auto")
    train.add_argument("--folds", type=int, default=5)
    train.add_argument("--max-cost", type=float, default=1.0, help="mean retrieval-call budget of the default policy")
    train.add_argument("--seed", type=int, default=0)
    evaluate = sub.add_parser("eval", help="evaluate a bundle on an outcomes file")
    evaluate.add_argument("--outcomes", type=Path, required=True)
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--model", type=Path, help="bundle directory (default: model.bundle_dir)")
    evaluate.add_argument("--thresholds", type=Path, help="thresholds file (default: the bundle's)")
    evaluate.add_argument("--train-split", default="dev_500", help="rows the kNN baseline and LODO train on")
    evaluate.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    evaluate.add_argument("--skip-lodo", action="store_true", help="skip leave-one-dataset-out (retrains 6 times)")
    evaluate.add_argument(
        "--robustness",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="decisions on perturbed questions (typos, casing, punctuation, paraphrase, negation): one embedding "
        "pass per family",
    )
    evaluate.add_argument("--robustness-sample", type=int, help="perturb this many questions (default: all)")
    evaluate.add_argument("--out", type=Path, help="write report.md and PNG plots to this directory")
    evaluate.add_argument("--json", action="store_true", help="print the whole report as one JSON object")
    evaluate.add_argument("--record", action="store_true", help="store the headline figures in the bundle's manifest")
    embedder = sub.add_parser("embedder", help="export the embedding model to ONNX (the serving backend)")
    embedder_sub = embedder.add_subparsers(dest="action", required=True)
    export = embedder_sub.add_parser("export", help="export embedder.path to ONNX (needs torch; offline, seconds)")
    export.add_argument("--int8", action="store_true", help="also write the int8-quantised model")
    export.add_argument("--out", type=Path, help="directory (default: embedder.onnx_dir, or var/embedders/...)")
    thresholds_cli.add_parser(sub)
    logs_cli.add_parser(sub)
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "serve": _serve,
    "ingest": _ingest,
    "label": _label,
    "train": _train,
    "eval": _eval,
    "embedder": _embedder,
    "thresholds": thresholds_cli.run,
    "logs": logs_cli.run,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from backends.documents import DocumentError
    from backends.errors import BackendError
    from models.bundle import BundleError
    from models.embedder import EmbedderError
    from models.outcomes import OutcomesError
    from router.cli.labelling import QuestionsError
    from router.lib.auth import InsecureSettings
    from router.routing_log.store import RoutingLogError

    expected: tuple[type[Exception], ...] = (
        BundleError, OutcomesError, DocumentError, BackendError, QuestionsError, RoutingLogError, EmbedderError,
        InsecureSettings,
    )  # fmt: skip
    try:
        return COMMANDS[args.command](args, get_settings())
    except expected as exc:
        print(f"router {args.command}: error: {exc}", file=sys.stderr)
        return 2
