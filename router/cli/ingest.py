"""``router ingest``: chunk, embed and store documents in the configured LanceDB table."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from router.lib.settings import Settings


def run(args: argparse.Namespace, settings: Settings) -> int:
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


def add_parser(sub: Any) -> None:
    ingest = sub.add_parser("ingest", help="chunk, embed and store documents (.md, .txt, .jsonl, directories)")
    ingest.add_argument("paths", nargs="+", type=Path)
    ingest.add_argument("--json", action="store_true", help="print the report as JSON")
    ingest.add_argument("--quiet", action="store_true", help="no progress bar")
