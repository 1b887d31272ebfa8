"""The ``router`` command (also ``python -m router``): serve, ingest, label, train, eval, embedder, thresholds, logs.

Settings come from ``ROUTER_*`` environment variables; flags given here override them for one run. One module per
sub-command, each with ``add_parser(sub)`` and ``run(args, settings) -> exit code``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from router.cli import embedder, evaluate, ingest, label, serve, thresholds, train
from router.cli import routing_log as logs
from router.lib.settings import get_settings

COMMANDS: dict[str, ModuleType] = {
    "serve": serve,
    "ingest": ingest,
    "label": label,
    "train": train,
    "eval": evaluate,
    "embedder": embedder,
    "thresholds": thresholds,
    "logs": logs,
}
"""Sub-command name -> its module."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="router", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS.values():
        command.add_parser(sub)
    return parser


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
        code: int = COMMANDS[args.command].run(args, get_settings())
        return code
    except expected as exc:
        print(f"router {args.command}: error: {exc}", file=sys.stderr)
        return 2
