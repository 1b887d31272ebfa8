"""``router train``: train a route classifier bundle from an outcomes file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from router.lib.settings import Settings


def run(args: argparse.Namespace, settings: Settings) -> int:
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


def add_parser(sub: Any) -> None:
    train = sub.add_parser("train", help="train a route classifier bundle from an outcomes file")
    train.add_argument("--outcomes", type=Path, required=True)
    train.add_argument("--split", default="dev_500")
    train.add_argument("--out", type=Path, help="bundle directory (default: model.bundle_dir)")
    train.add_argument("--calibration", choices=["auto", "sigmoid", "isotonic"], default="auto")
    train.add_argument("--folds", type=int, default=5)
    train.add_argument("--max-cost", type=float, default=1.0, help="mean retrieval-call budget of the default policy")
    train.add_argument("--seed", type=int, default=0)
