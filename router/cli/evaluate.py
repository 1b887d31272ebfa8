"""``router eval``: evaluate a bundle on an outcomes file (report, plots, recorded figures)."""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path
from typing import Any

from router.lib.settings import Settings


def run(args: argparse.Namespace, settings: Settings) -> int:
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


def _summary(report: dict[str, Any]) -> str:
    from models.report import render_markdown

    return render_markdown(report)


def add_parser(sub: Any) -> None:
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
