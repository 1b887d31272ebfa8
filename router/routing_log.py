"""The durable routing log: one row per decision in a LanceDB table (a local directory or object storage).

Writes never wait on storage: :meth:`RoutingLog.append` puts the record in a buffer, and a background task writes
the buffer as one append every ``flush_seconds`` (or sooner when ``max_batch`` records are waiting). A failed write
keeps the records buffered and is retried on the next flush; past ``max_buffer`` the oldest are dropped, counted and
logged (``routing_log_dropped``), never silently. :meth:`close` (a clean shutdown) writes everything still buffered.
A crash loses at most the last ``flush_seconds`` of records.

Every append is a new table version with one small fragment, and LanceDB caches what it reads of each version. Left
alone, a day at one flush a second is 86,400 fragments: reads slow down (a page of ``/v1/routing-logs`` took 1.6 s
after 2,000 appends) and memory grows with them (190 -> 880 MiB over the same 2,000). So a task beside the flush
loop compacts the table every ``COMPACT_EVERY`` appends and removes versions older than ``KEEP_VERSIONS``, and the
connection's caches are capped (``CACHE_BYTES``); ``python -m bench --cases soak`` measures the result.
Compaction goes through the ``lance`` package rather than LanceDB's ``optimize``: that one merges every fragment
under a million rows, so it rewrote the whole log each time (2.5 s a round at 300k rows, growing with the table),
where ``COMPACT_ROWS`` bounds what a round rewrites.

Rows are read newest first by ``seq``: microseconds since the epoch times 1,000 plus a per-process counter, unique
across replicas in practice and usable as a pagination cursor. Retention deletes rows older than ``retention_days``
and then the oldest beyond ``max_records``.

Reads stay proportional to what they return, not to the table: the compaction round also keeps B-tree indexes on
``seq``, ``ts`` and ``request_id`` (``INDEXED``), and :meth:`RoutingLog.newest` (a page, the drift sample) looks
for the newest records in a window of ``seq`` that widens eightfold until it holds them (``FIND_WINDOWS``). At a
million records a page of ``/v1/routing-logs`` took 300 ms when it read the whole ``seq`` column, and a lookup by
request id 160 ms; with the indexes and the window, 16 ms and 9 ms.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import anyio
import lancedb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import structlog

from backends.lancedb import sql_literal
from models.routes import ROUTES
from router.logs import query_digest

log = structlog.get_logger("router.routing_log")

QueryText = Literal["full", "hash"]
COMPACT_EVERY = 60
"""Appends between two compactions: about a minute at the default flush interval (LanceDB's guidance is to optimise
after 20 or more writes)."""
COMPACT_ROWS = 65_536
"""Fragments this large are left alone, so a compaction rewrites at most this many rows plus the new appends."""
KEEP_VERSIONS = timedelta(minutes=10)
"""Versions newer than this survive a compaction, so that another replica still reading one (it looks for a newer
version every ``read_consistency_seconds``) keeps its files."""
INDEXED = ("seq", "ts", "request_id")
"""Columns with a B-tree index: the page cursor, the time windows of stats and drift, and lookups by request id.
Rows appended since the last compaction are not in the indexes yet; queries scan those directly."""
FIND_WINDOWS = tuple(60 * 8**k for k in range(6))
"""Seconds of ``seq`` that :meth:`RoutingLog.newest` searches for the newest page before it widens the window (1 min to
about 23 days; then the whole table)."""
CACHE_BYTES = 32 << 20
"""Cap on the routing-log connection's metadata and index caches (LanceDB's defaults are sized for large vector
indexes; this table's three B-trees take about 50 MB at a million records, and reads need only their newest part)."""
STAGES = ("embed", "classify", "retrieve", "generate", "total")


def schema(dimension: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("seq", pa.int64(), nullable=False),
            pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
            pa.field("request_id", pa.string(), nullable=False),
            pa.field("endpoint", pa.string(), nullable=False),
            pa.field("query", pa.string(), nullable=False),
            pa.field("route", pa.string(), nullable=False),
            pa.field("route_source", pa.string(), nullable=False),
            *(pa.field(f"score_{route}", pa.float32(), nullable=False) for route in ROUTES),
            pa.field("cost_weight", pa.float64(), nullable=False),
            pa.field("knob_source", pa.string(), nullable=False),
            pa.field("thresholds_version", pa.int64(), nullable=False),
            pa.field("model_version", pa.string(), nullable=False),
            pa.field("status", pa.string(), nullable=False),
            pa.field("answered_by", pa.string()),
            pa.field("llm_model", pa.string()),
            pa.field("fallback", pa.bool_(), nullable=False),
            pa.field("fallback_to", pa.string()),
            pa.field("fallback_reason", pa.string()),
            pa.field("failures", pa.string(), nullable=False),
            pa.field("source_ids", pa.list_(pa.string()), nullable=False),
            pa.field("answer_chars", pa.int64(), nullable=False),
            *(pa.field(f"ms_{stage}", pa.float32(), nullable=False) for stage in STAGES),
            pa.field("vector", pa.list_(pa.float32(), dimension), nullable=False),
        ]
    )


_counter = itertools.count()


def next_seq() -> int:
    """A record's ordering key: microseconds since the epoch x 1,000 plus a per-process counter."""
    return time.time_ns() // 1_000 * 1_000 + next(_counter) % 1_000


LIGHT_COLUMNS = [field.name for field in schema(1) if field.name != "vector"]
"""Every column but the embedding: what listings and exports read."""


class RoutingLogError(RuntimeError):
    """The routing log table cannot be opened (bad URI, credentials, or a table of another shape)."""


@dataclass(frozen=True)
class LogFilter:
    """Which records to read; every field narrows (AND)."""

    since: datetime | None = None
    until: datetime | None = None
    route: str | None = None
    fallback: bool | None = None
    status: str | None = None
    text: str | None = None
    """Substring of the query text (case-sensitive; no match when query text is stored hashed)."""
    min_scores: Mapping[str, float] | None = None
    max_scores: Mapping[str, float] | None = None
    before_seq: int | None = None
    after_seq: int | None = None

    def predicate(self) -> str | None:
        clauses = []
        if self.since:
            clauses.append(f"ts >= {_timestamp(self.since)}")
        if self.until:
            clauses.append(f"ts < {_timestamp(self.until)}")
        if self.route:
            clauses.append(f"route = {sql_literal(self.route)}")
        if self.fallback is not None:
            clauses.append(f"fallback = {str(self.fallback).lower()}")
        if self.status:
            clauses.append(f"status = {sql_literal(self.status)}")
        if self.text:
            escaped = self.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clauses.append(f"query LIKE {sql_literal('%' + escaped + '%')} ESCAPE '\\'")
        for bounds, op in ((self.min_scores, ">="), (self.max_scores, "<=")):
            for route, value in (bounds or {}).items():
                if route not in ROUTES:
                    raise ValueError(f"unknown route {route!r} in a score bound; routes are {list(ROUTES)}")
                clauses.append(f"score_{route} {op} {float(value)!r}")
        if self.before_seq is not None:
            clauses.append(f"seq < {int(self.before_seq)}")
        if self.after_seq is not None:
            clauses.append(f"seq > {int(self.after_seq)}")
        return " AND ".join(clauses) or None


def _timestamp(moment: datetime) -> str:
    return f"arrow_cast({int(moment.timestamp() * 1_000_000)}, 'Timestamp(Microsecond, Some(\"UTC\"))')"


class RoutingLog:
    def __init__(
        self,
        table: Any,
        dimension: int,
        *,
        query_text: QueryText = "full",
        flush_seconds: float = 1.0,
        max_batch: int = 1000,
        max_buffer: int = 100_000,
        storage_options: Mapping[str, str] | None = None,
    ) -> None:
        self._table = table
        self._storage_options = dict(storage_options or {}) or None
        self.dimension = dimension
        self.schema = schema(dimension)
        self.query_text = query_text
        self.flush_seconds = flush_seconds
        self.max_batch = max_batch
        self._buffer: deque[dict[str, Any]] = deque()
        self.max_buffer = max_buffer
        self._wake = anyio.Event()
        self._write_lock = anyio.Lock()
        self.written = 0
        self.dropped = 0
        self._appends_since_compaction = 0
        self._compaction_due = anyio.Event()
        # Retention and compaction take turns: a delete committed during a round's rewrite of the same fragment fails
        # the rewrite (Lance's "Rewrite preempted by concurrent Delete"). At a million records, pruning every minute,
        # the two met so often that the indexes fell minutes behind and a page took 400 ms.
        self._maintenance = anyio.Lock()

    @classmethod
    async def open(
        cls,
        uri: str,
        table: str,
        dimension: int | None,
        *,
        storage_options: Mapping[str, str] | None = None,
        read_consistency: timedelta | None = None,
        **options: Any,
    ) -> RoutingLog:
        """Opens (creating when absent) the table. With ``dimension`` None (a reader such as ``router logs``), the
        table must exist and its own dimension is used."""
        try:
            db = await lancedb.connect_async(
                uri,
                storage_options=dict(storage_options or {}) or None,
                read_consistency_interval=read_consistency,
                session=lancedb.Session(index_cache_size_bytes=CACHE_BYTES, metadata_cache_size_bytes=CACHE_BYTES),
            )
            try:
                handle = await db.open_table(table)
            except ValueError:
                if dimension is None:
                    raise RoutingLogError(f"no routing log table {table!r} at {uri} yet") from None
                handle = await db.create_table(table, schema=schema(dimension), exist_ok=True)
            existing = await handle.schema()
        except RoutingLogError:
            raise
        except Exception as exc:
            raise RoutingLogError(f"cannot open the routing log table {table!r} at {uri}: {exc}") from exc
        if dimension is None:
            dimension = int(getattr(existing.field("vector").type, "list_size", 0)) if "vector" in existing.names else 0
        wanted = schema(dimension)
        if existing.names != wanted.names or existing.field("vector").type != wanted.field("vector").type:
            raise RoutingLogError(
                f"routing log table {table!r} at {uri} has columns {existing.names} "
                f"({existing.field('vector').type if 'vector' in existing.names else 'no vector'}), not this "
                f"version's; point routing_log.table at a new table or delete this one"
            )
        return cls(handle, dimension, storage_options=storage_options, **options)

    # -- writing -------------------------------------------------------------------------------------------------

    def stored_query(self, text: str) -> str:
        if self.query_text == "hash":
            return query_digest(text)
        return text

    def append(self, row: dict[str, Any]) -> None:
        """Queues one record (a dict with this schema's columns); never blocks."""
        self._buffer.append(row)
        overflow = len(self._buffer) - self.max_buffer
        if overflow > 0:
            for _ in range(overflow):
                self._buffer.popleft()
            self.dropped += overflow
            log.error("routing_log_dropped", dropped=overflow, total_dropped=self.dropped, buffer=len(self._buffer))
        if len(self._buffer) >= self.max_batch:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    async def flush(self) -> int:
        """Writes everything buffered now, as one append; returns how many rows were written."""
        async with self._write_lock:
            if not self._buffer:
                return 0
            rows = list(self._buffer)
            try:
                await self._table.add(pa.Table.from_pylist(rows, schema=self.schema))
            except Exception as exc:
                log.warning("routing_log_write_failed", error=str(exc), pending=len(rows))
                return 0
            for _ in range(len(rows)):
                self._buffer.popleft()
            self.written += len(rows)
            self._appends_since_compaction += 1
            if self._appends_since_compaction >= COMPACT_EVERY:
                self._compaction_due.set()
            return len(rows)

    async def compact(self) -> None:
        """Merges the small fragments appends leave (up to ``COMPACT_ROWS`` rows a fragment), brings the ``INDEXED``
        indexes up to date (creating any that are missing), and removes versions older than ``KEEP_VERSIONS``. A
        rewrite that loses to another replica's commit is logged (``routing_log_compaction_failed``) and retried by
        the next round; the indexes are still brought up to date."""
        self._appends_since_compaction = 0
        try:
            uri = await self._table.uri()
            async with self._maintenance:
                removed, versions = await anyio.to_thread.run_sync(self._compact_files, uri)
        except Exception as exc:
            log.warning("routing_log_compaction_failed", error=str(exc))
            return
        log.debug("routing_log_compacted", fragments_removed=removed, versions_removed=versions)

    def _compact_files(self, uri: str) -> tuple[int, int]:
        import lance  # the compaction options LanceDB does not expose; imported here, off the import path

        started = time.monotonic()

        def latest() -> Any:
            return lance.dataset(
                uri,
                storage_options=self._storage_options,
                metadata_cache_size_bytes=CACHE_BYTES,
                index_cache_size_bytes=CACHE_BYTES,
            )

        dataset = latest()
        try:
            compacted = dataset.optimize.compact_files(
                target_rows_per_fragment=COMPACT_ROWS, materialize_deletions=True
            )
            removed = int(compacted.fragments_removed)
        except Exception as exc:  # another replica's commit won; the indexes still take the new rows
            log.warning("routing_log_compaction_failed", error=str(exc))
            dataset, removed = latest(), 0
        indexed = {name for index in dataset.describe_indices() for name in index.field_names}
        for column in INDEXED:
            if column not in indexed:  # a new table, or one an older version wrote
                dataset.create_scalar_index(column, "BTREE")
        dataset.optimize.optimize_indices()  # adds the rows appended since the last round
        # never this round's own versions: the next append rebases onto them and reads their transactions
        this_round = timedelta(seconds=time.monotonic() - started)
        cleaned = dataset.cleanup_old_versions(older_than=max(KEEP_VERSIONS, this_round))
        return removed, int(cleaned.old_versions)

    async def run(self) -> None:
        """The background tasks: the flush loop (every ``flush_seconds``, or at once when a batch is full) and,
        beside it, a compaction every ``COMPACT_EVERY`` appends. Compaction never holds up a flush, so a round of
        it does not widen the crash window (LanceDB commits an append and a compaction side by side)."""
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._compact_when_due)
            while True:
                with anyio.move_on_after(self.flush_seconds):
                    await self._wake.wait()
                self._wake = anyio.Event()
                await self.flush()

    async def _compact_when_due(self) -> None:
        while True:
            await self._compaction_due.wait()
            self._compaction_due = anyio.Event()
            await self.compact()

    async def close(self) -> None:
        """Writes what is still buffered (a clean shutdown); logs what could not be written."""
        await self.flush()
        if self._buffer:
            log.error("routing_log_unflushed", pending=len(self._buffer))

    async def prune(self, retention_days: float | None, max_records: int | None) -> int:
        """Deletes rows past the retention; returns how many. Never during a compaction round of this process."""
        async with self._maintenance:
            return await self._prune(retention_days, max_records)

    async def _prune(self, retention_days: float | None, max_records: int | None) -> int:
        before = int(await self._table.count_rows())
        if retention_days is not None:
            cutoff = datetime.now(UTC) - timedelta(days=retention_days)
            await self._table.delete(f"ts < {_timestamp(cutoff)}")
        if max_records is not None:
            count = int(await self._table.count_rows())
            if count > max_records:
                seqs = await self.column("seq", None)
                cut = int(np.sort(seqs)[count - max_records])
                await self._table.delete(f"seq < {cut}")
        removed = before - int(await self._table.count_rows())
        if removed:
            log.info("routing_log_pruned", removed=removed)
        return removed

    # -- reading -------------------------------------------------------------------------------------------------

    async def count(self) -> int:
        return int(await self._table.count_rows())

    async def column(self, column: str, where: str | None) -> npt.NDArray[Any]:
        query = self._table.query().select([column])
        if where:
            query = query.where(where)
        table = await query.to_arrow()
        return np.asarray(table.column(column).to_numpy())

    async def newest(self, where: str | None, count: int, below: int | None = None) -> npt.NDArray[np.int64]:
        """The ``seq`` of the newest ``count`` records matching ``where`` (below ``below``), newest first. It searches
        the newest minute of ``seq`` first and widens the window until it holds ``count`` matches, so the cost
        follows what it returns rather than the table's size."""
        top = below if below is not None else time.time_ns() // 1_000 * 1_000
        bound = None if below is None else f"seq < {int(below)}"
        for seconds in (*FIND_WINDOWS, None):
            window = None if seconds is None else f"seq >= {top - seconds * 1_000_000_000}"
            seqs = await self.column("seq", " AND ".join(c for c in (where, bound, window) if c) or None)
            if len(seqs) >= count:
                break
        return np.sort(seqs.astype(np.int64))[::-1][:count]

    async def find(
        self, where: LogFilter, limit: int, columns: Sequence[str] | None = None
    ) -> tuple[list[dict[str, Any]], int | None]:
        """The newest ``limit`` records matching ``where``, newest first, and the cursor for the next page (the
        last ``seq`` returned; None when there are no more)."""
        newest = await self.newest(replace(where, before_seq=None).predicate(), limit + 1, where.before_seq)
        if len(newest) == 0:
            return [], None
        page = newest[:limit]
        rows = await self.rows(f"seq IN ({', '.join(str(int(s)) for s in page)})", columns)
        rows.sort(key=lambda row: row["seq"], reverse=True)
        return rows, int(page[-1]) if len(newest) > limit else None

    async def rows(self, where: str | None, columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
        query = self._table.query()
        if columns:
            query = query.select(list(columns))
        if where:
            query = query.where(where)
        table = await query.to_arrow()
        return list(table.to_pylist())

    async def get(self, request_id: str) -> list[dict[str, Any]]:
        return await self.rows(f"request_id = {sql_literal(request_id)}")

    async def arrow(self, where: str | None, columns: Sequence[str] | None = None) -> pa.Table:
        query = self._table.query()
        if columns:
            query = query.select(list(columns))
        if where:
            query = query.where(where)
        return await query.to_arrow()


def failures_json(failures: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps(list(failures), separators=(",", ":"))
