"""``router label``: answer questions through every route and write an outcomes file (the job is
:mod:`router.cli.labelling`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from router.lib.settings import Settings


def run(args: argparse.Namespace, settings: Settings) -> int:
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


def add_parser(sub: Any) -> None:
    label = sub.add_parser("label", help="answer questions through every route and write an outcomes file")
    label.add_argument("--questions", type=Path, required=True, help='JSONL: {"id"?, "question", "answers": [...]}')
    label.add_argument("--out", type=Path, required=True, help="outcomes JSONL (appended to; resumable)")
    label.add_argument("--split", default="dev_500", help="split name written on each row (router train's default)")
    label.add_argument("--concurrency", type=int, default=4, help="questions in flight at once")
    label.add_argument("--top-k", type=int, help="passages retrieved (default: retrieval.top_k)")
    label.add_argument("--quiet", action="store_true", help="no progress bar")
