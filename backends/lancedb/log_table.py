"""An append-only LanceDB table that stays fast to read however often it is appended to: the storage of the
routing log. The caller owns the columns (its Arrow schema); this module owns the LanceDB and ``lance`` I/O.

Every append is a new table version with one small fragment, and LanceDB caches what it reads of each version. Left
alone, a day at one append a second is 86,400 fragments: reads slow down (a page of ``/v1/routing-logs`` took 1.6 s
after 2,000 appends) and memory grows with them (190 -> 880 MiB over the same 2,000). So :meth:`LogTable.compact`
merges the small fragments, keeps B-tree indexes on the ``indexed`` columns up to date and removes versions older
than ``KEEP_VERSIONS``, and the connection's caches are capped (``CACHE_BYTES``). Compaction goes through the
``lance`` package rather than LanceDB's ``optimize``: that one merges every fragment under a million rows, so it
rewrote the whole table each time (2.5 s a round at 300k rows, growing with the table), where ``COMPACT_ROWS``
bounds what a round rewrites.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import anyio
import lancedb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import structlog

log = structlog.get_logger("backends.lancedb.log_table")

COMPACT_ROWS = 65_536
"""Fragments this large are left alone, so a compaction rewrites at most this many rows plus the new appends."""
KEEP_VERSIONS = timedelta(minutes=10)
"""Versions newer than this survive a compaction, so that another replica still reading one (it looks for a newer
version every ``read_consistency_seconds``) keeps its files."""
CACHE_BYTES = 32 << 20
"""Cap on the connection's metadata and index caches (LanceDB's defaults are sized for large vector indexes; the
routing log's three B-trees take about 50 MB at a million records, and reads need only their newest part)."""


class LogTableError(RuntimeError):
    """The table cannot be opened (bad URI, credentials); the message names it."""


class LogTable:
    def __init__(self, table: Any, *, indexed: Sequence[str], storage_options: Mapping[str, str] | None) -> None:
        self._table = table
        self.indexed = tuple(indexed)
        self._storage_options = dict(storage_options or {}) or None

    @classmethod
    async def open(
        cls,
        uri: str,
        name: str,
        create_with: pa.Schema | None,
        *,
        indexed: Sequence[str] = (),
        storage_options: Mapping[str, str] | None = None,
        read_consistency: timedelta | None = None,
    ) -> LogTable | None:
        """Opens the table, creating it with ``create_with`` when absent; None when it is absent and
        ``create_with`` is None (a reader that must not create it)."""
        try:
            db = await lancedb.connect_async(
                uri,
                storage_options=dict(storage_options or {}) or None,
                read_consistency_interval=read_consistency,
                session=lancedb.Session(index_cache_size_bytes=CACHE_BYTES, metadata_cache_size_bytes=CACHE_BYTES),
            )
            try:
                handle = await db.open_table(name)
            except ValueError:
                if create_with is None:
                    return None
                handle = await db.create_table(name, schema=create_with, exist_ok=True)
        except Exception as exc:
            raise LogTableError(f"cannot open the table {name!r} at {uri}: {exc}") from exc
        return cls(handle, indexed=indexed, storage_options=storage_options)

    async def schema(self) -> pa.Schema:
        return await self._table.schema()

    async def add(self, rows: pa.Table) -> None:
        await self._table.add(rows)

    async def delete(self, where: str) -> None:
        await self._table.delete(where)

    async def count(self) -> int:
        return int(await self._table.count_rows())

    async def column(self, column: str, where: str | None) -> npt.NDArray[Any]:
        query = self._table.query().select([column])
        if where:
            query = query.where(where)
        table = await query.to_arrow()
        return np.asarray(table.column(column).to_numpy())

    async def arrow(self, where: str | None, columns: Sequence[str] | None = None) -> pa.Table:
        query = self._table.query()
        if columns:
            query = query.select(list(columns))
        if where:
            query = query.where(where)
        return await query.to_arrow()

    async def compact(self) -> tuple[int, int]:
        """Merges the small fragments appends leave (up to ``COMPACT_ROWS`` rows a fragment), brings the indexes up
        to date (creating any that are missing), and removes versions older than ``KEEP_VERSIONS``; returns the
        fragments and versions removed. A rewrite that loses to another replica's commit is logged
        (``routing_log_compaction_failed``) and left to the next round; the indexes are still brought up to date."""
        uri = await self._table.uri()
        return await anyio.to_thread.run_sync(self._compact_files, uri)

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
        for column in self.indexed:
            if column not in indexed:  # a new table, or one an older version wrote
                dataset.create_scalar_index(column, "BTREE")
        dataset.optimize.optimize_indices()  # adds the rows appended since the last round
        # never this round's own versions: the next append rebases onto them and reads their transactions
        this_round = timedelta(seconds=time.monotonic() - started)
        cleaned = dataset.cleanup_old_versions(older_than=max(KEEP_VERSIONS, this_round))
        return removed, int(cleaned.old_versions)
