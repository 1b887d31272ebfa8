"""``router logs tail|query|export``: the routing log read straight from its table (``routing_log.uri``), so it works
with or without a running service, on a local directory or on object storage."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio

from models.routes import ROUTES
from router.lib.settings import Settings
from router.routing_log.store import RoutingLog
from router.routing_log.table import LIGHT_COLUMNS, LogFilter


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("logs", help="read the routing log: tail, query, export (JSONL or Parquet)")
    actions = parser.add_subparsers(dest="action", required=True)
    tail = actions.add_parser("tail", help="print records as they are written (Ctrl-C stops)")
    _filters(tail)
    tail.add_argument("--last", type=int, default=10, help="start with the last N records")
    tail.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    tail.add_argument("--count", type=int, help="stop after printing this many new records")
    query = actions.add_parser("query", help="print matching records, newest first")
    _filters(query)
    query.add_argument("--limit", type=int, default=50)
    export = actions.add_parser("export", help="write matching records to a file")
    _filters(export)
    export.add_argument("--out", type=Path, required=True)
    export.add_argument("--format", choices=["jsonl", "parquet"], help="default: from the file's extension")
    export.add_argument("--with-vectors", action="store_true", help="include the query embeddings")


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", help="ISO time, e.g. 2026-11-21T10:00:00Z")
    parser.add_argument("--until", help="ISO time")
    parser.add_argument("--route", choices=ROUTES)
    parser.add_argument("--status", choices=["decided", "answered", "no_answer", "client_left"])
    parser.add_argument("--fallback", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--text", help="query text contains")
    parser.add_argument("--json", action="store_true", help="one JSON object per record")


def _time(value: str | None) -> datetime | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _filter(args: argparse.Namespace, **extra: Any) -> LogFilter:
    return LogFilter(
        since=_time(args.since),
        until=_time(args.until),
        route=args.route,
        status=args.status,
        fallback=args.fallback,
        text=args.text,
        **extra,
    )


def plain(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row as JSON-ready values (times as ISO strings, the vector left out)."""
    return {
        key: value.isoformat() if isinstance(value, datetime) else value
        for key, value in row.items()
        if key != "vector"
    }


def line(row: dict[str, Any]) -> str:
    scores = " ".join(f"{route}={row[f'score_{route}']:.2f}" for route in ROUTES)
    fallback = f" fallback->{row['fallback_to']} ({row['fallback_reason']})" if row["fallback"] else ""
    answered = f" answered_by={row['answered_by']}" if row["answered_by"] else ""
    return (
        f"{row['ts']:%Y-%m-%d %H:%M:%S} {row['request_id']:<24} {row['route']:<4} {row['route_source']:<7} "
        f"{scores} v{row['thresholds_version']} {row['status']}{answered}{fallback} "
        f"{row['ms_total']:.0f}ms  {row['query'][:80]}"
    )


def _print(rows: list[dict[str, Any]], as_json: bool) -> None:
    for row in rows:
        print(json.dumps(plain(row)) if as_json else line(row), flush=True)


def run(args: argparse.Namespace, settings: Settings) -> int:
    return anyio.run(_run, args, settings)


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    cfg = settings.routing_log
    options = settings.retrieval.storage_options if cfg.storage_options is None else cfg.storage_options
    log = await RoutingLog.open(
        cfg.uri or settings.retrieval.uri,
        cfg.table,
        None,
        storage_options=options,
        read_consistency=timedelta(0),  # every read sees the newest writes (tail)
    )
    if args.action == "query":
        rows, _ = await log.find(_filter(args), args.limit, LIGHT_COLUMNS)
        _print(rows, args.json)
        return 0
    if args.action == "export":
        columns = None if args.with_vectors else LIGHT_COLUMNS
        table = await log.arrow(_filter(args).predicate(), columns)
        table = table.sort_by("seq")
        kind = args.format or ("parquet" if args.out.suffix == ".parquet" else "jsonl")
        if kind == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(table, args.out)
        else:
            with args.out.open("w", encoding="utf-8") as handle:
                for row in table.to_pylist():
                    handle.write(json.dumps(plain(row) | ({"vector": row["vector"]} if columns is None else {})))
                    handle.write("\n")
        print(f"{table.num_rows} records written to {args.out} ({kind})", file=sys.stderr)
        return 0
    rows, _ = await log.find(_filter(args), args.last, LIGHT_COLUMNS)
    rows.reverse()
    _print(rows, args.json)
    last = max((int(r["seq"]) for r in rows), default=0)
    printed = 0
    while args.count is None or printed < args.count:
        await anyio.sleep(args.interval)
        found, _ = await log.find(_filter(args, after_seq=last), 10_000, LIGHT_COLUMNS)
        found.reverse()
        if args.count is not None:
            found = found[: args.count - printed]
        _print(found, args.json)
        printed += len(found)
        last = max((int(r["seq"]) for r in found), default=last)
    return 0
