"""The durable routing log: one row per routing record in a LanceDB table (a local directory or object storage),
written through a buffer and read newest first. The table's format is :mod:`router.routing_log.table`; its LanceDB
I/O and compaction are :mod:`backends.lancedb.log_table`.

Writes never wait on storage: :meth:`RoutingLog.write` puts the record in a buffer, and a background task writes
the buffer as one append every ``flush_seconds`` (or sooner when ``max_batch`` records are waiting). A failed write
keeps the records buffered and is retried on the next flush; past ``max_buffer`` the oldest are dropped, counted and
logged (``routing_log_dropped``), never silently. :meth:`close` (a clean shutdown) writes everything still buffered.
A crash loses at most the last ``flush_seconds`` of records.

A task beside the flush loop compacts the table every ``COMPACT_EVERY`` appends (``python -m bench --cases soak``
measures the result). Retention deletes rows older than ``retention_days`` and then the oldest beyond
``max_records``; retention and compaction take turns.

Reads stay proportional to what they return, not to the table: the compaction round keeps B-tree indexes on
``seq``, ``ts`` and ``request_id`` (``INDEXED``), and :meth:`RoutingLog.newest` (a page, the drift sample) looks
for the newest records in a window of ``seq`` that widens eightfold until it holds them (``FIND_WINDOWS``). At a
million records a page of ``/v1/routing-logs`` took 300 ms when it read the whole ``seq`` column, and a lookup by
request id 160 ms; with the indexes and the window, 16 ms and 9 ms.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import structlog

from backends.lancedb import sql_literal, timestamp_literal
from backends.lancedb.log_table import LogTable, LogTableError
from router.routing.record import RoutingRecord
from router.routing_log.table import INDEXED, LogFilter, QueryText, schema, to_row

log = structlog.get_logger("router.routing_log.store")

COMPACT_EVERY = 60
"""Appends between two compactions: about a minute at the default flush interval (LanceDB's guidance is to optimise
after 20 or more writes)."""
FIND_WINDOWS = tuple(60 * 8**k for k in range(6))
"""Seconds of ``seq`` that :meth:`RoutingLog.newest` searches for the newest page before it widens the window (1 min to
about 23 days; then the whole table)."""


class RoutingLogError(RuntimeError):
    """The routing log table cannot be opened (bad URI, credentials, or a table of another shape)."""


class RoutingLog:
    def __init__(
        self,
        table: LogTable,
        dimension: int,
        *,
        query_text: QueryText = "full",
        flush_seconds: float = 1.0,
        max_batch: int = 1000,
        max_buffer: int = 100_000,
    ) -> None:
        self.table = table
        self.dimension = dimension
        self.schema = schema(dimension)
        self.query_text = query_text
        self.flush_seconds = flush_seconds
        self.max_batch = max_batch
        self._buffer: deque[dict[str, Any]] = deque()
        self.max_buffer = max_buffer
        self._wake = anyio.Event()
        self._write_lock = anyio.Lock()
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
            handle = await LogTable.open(
                uri, table, None if dimension is None else schema(dimension), indexed=INDEXED,
                storage_options=storage_options, read_consistency=read_consistency,
            )  # fmt: skip
            if handle is None:
                raise RoutingLogError(f"no routing log table {table!r} at {uri} yet")
            existing = await handle.schema()
        except LogTableError as exc:
            raise RoutingLogError(f"cannot open the routing log: {exc}") from exc
        if dimension is None:
            dimension = int(getattr(existing.field("vector").type, "list_size", 0)) if "vector" in existing.names else 0
        wanted = schema(dimension)
        if existing.names != wanted.names or existing.field("vector").type != wanted.field("vector").type:
            raise RoutingLogError(
                f"routing log table {table!r} at {uri} has columns {existing.names} "
                f"({existing.field('vector').type if 'vector' in existing.names else 'no vector'}), not this "
                f"version's; point routing_log.table at a new table or delete this one"
            )
        return cls(handle, dimension, **options)

    # -- writing -------------------------------------------------------------------------------------------------

    def write(self, record: RoutingRecord) -> None:
        """Queues one routing record; never blocks (a sink)."""
        self.append(to_row(record, self.query_text))

    def append(self, row: dict[str, Any]) -> None:
        """Queues one row (a dict with this schema's columns); never blocks."""
        self._buffer.append(row)
        overflow = len(self._buffer) - self.max_buffer
        if overflow > 0:
            for _ in range(overflow):
                self._buffer.popleft()
            self.dropped += overflow
            log.error("routing_log_dropped", dropped=overflow, total_dropped=self.dropped, buffer=len(self._buffer))
        if len(self._buffer) >= self.max_batch:
            self._wake.set()

    async def flush(self) -> int:
        """Writes everything buffered now, as one append; returns how many rows were written."""
        async with self._write_lock:
            if not self._buffer:
                return 0
            rows = list(self._buffer)
            try:
                await self.table.add(pa.Table.from_pylist(rows, schema=self.schema))
            except Exception as exc:
                log.warning("routing_log_write_failed", error=str(exc), pending=len(rows))
                return 0
            for _ in range(len(rows)):
                self._buffer.popleft()
            self._appends_since_compaction += 1
            if self._appends_since_compaction >= COMPACT_EVERY:
                self._compaction_due.set()
            return len(rows)

    async def compact(self) -> None:
        """One compaction round (:meth:`backends.lancedb.log_table.LogTable.compact`), never beside a prune of this
        process; a failed round is logged and the next one retries."""
        self._appends_since_compaction = 0
        try:
            async with self._maintenance:
                removed, versions = await self.table.compact()
        except Exception as exc:
            log.warning("routing_log_compaction_failed", error=str(exc))
            return
        log.debug("routing_log_compacted", fragments_removed=removed, versions_removed=versions)

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
        before = await self.table.count()
        if retention_days is not None:
            cutoff = datetime.now(UTC) - timedelta(days=retention_days)
            await self.table.delete(f"ts < {timestamp_literal(cutoff)}")
        if max_records is not None:
            count = await self.table.count()
            if count > max_records:
                seqs = await self.column("seq", None)
                cut = int(np.sort(seqs)[count - max_records])
                await self.table.delete(f"seq < {cut}")
        removed = before - await self.table.count()
        if removed:
            log.info("routing_log_pruned", removed=removed)
        return removed

    # -- reading -------------------------------------------------------------------------------------------------

    async def count(self) -> int:
        return await self.table.count()

    async def column(self, column: str, where: str | None) -> npt.NDArray[Any]:
        return await self.table.column(column, where)

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
        return list((await self.table.arrow(where, columns)).to_pylist())

    async def get(self, request_id: str) -> list[dict[str, Any]]:
        return await self.rows(f"request_id = {sql_literal(request_id)}")

    async def arrow(self, where: str | None, columns: Sequence[str] | None = None) -> pa.Table:
        return await self.table.arrow(where, columns)
