"""The ``router`` command (also ``python -m router``): serve, ingest, label, train, eval, embedder, thresholds, logs.

Settings come from ``ROUTER_*`` environment variables; flags given here override them for one run. One module per
sub-command, each with ``add_parser(sub)`` and ``run(args, settings) -> exit code``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from pydantic import ValidationError

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


def _setting_error(error: Any) -> str:
    """One wrong setting: our own validators' words as they are, pydantic's after the setting's name."""
    if error["type"] == "value_error":
        return str(error["ctx"]["error"])
    return f"{'.'.join(map(str, error['loc'])) or 'settings'}: {error['msg']}"


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
        settings = get_settings()
    except ValidationError as exc:  # one line per wrong setting, never its value (hide_input_in_errors)
        wrong = "; ".join(_setting_error(error) for error in exc.errors())
        print(f"router {args.command}: error: invalid settings: {wrong}", file=sys.stderr)
        return 2
    try:
        code: int = COMMANDS[args.command].run(args, settings)
        return code
    except expected as exc:
        print(f"router {args.command}: error: {exc}", file=sys.stderr)
        return 2
