"""``router embedder export``: export the embedding model to ONNX, the serving backend."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from router.lib.settings import Settings


def run(args: argparse.Namespace, settings: Settings) -> int:
    from models.embedder import default_onnx_dir
    from models.onnx_export import export_onnx

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


def add_parser(sub: Any) -> None:
    embedder = sub.add_parser("embedder", help="export the embedding model to ONNX (the serving backend)")
    embedder_sub = embedder.add_subparsers(dest="action", required=True)
    export = embedder_sub.add_parser("export", help="export embedder.path to ONNX (needs torch; offline, seconds)")
    export.add_argument("--int8", action="store_true", help="also write the int8-quantised model")
    export.add_argument("--out", type=Path, help="directory (default: embedder.onnx_dir, or var/embedders/...)")
