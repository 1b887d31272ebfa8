"""Chunks and their embeddings in a LanceDB table: idempotent per-document writes and vector search.

The table lives at any URI LanceDB accepts: a local directory (the default) or object storage such as
``s3://bucket/prefix`` (credentials and endpoint through ``storage_options``). One row per chunk::

    chunk_id "<doc_id>#<index>", doc_id, chunk_index, section, text, title, uri, content_sha256, ingested_at, vector

``vector`` embeds the section's heading trail together with ``text`` (see ``backends.documents.Chunk``).

A document is written with one ``merge_insert`` keyed on ``chunk_id`` that also deletes the document's chunks that
no longer exist, so a re-ingest is a single atomic commit and readers never see half a document.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import lancedb
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from backends.documents import Chunk
from backends.errors import RetrievalError


@dataclass(frozen=True)
class Passage:
    chunk_id: str
    doc_id: str
    section: str
    text: str
    title: str
    uri: str
    score: float


def _schema(dimension: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("chunk_id", pa.string(), nullable=False),
            pa.field("doc_id", pa.string(), nullable=False),
            pa.field("chunk_index", pa.int32(), nullable=False),
            pa.field("section", pa.string()),
            pa.field("text", pa.string(), nullable=False),
            pa.field("title", pa.string()),
            pa.field("uri", pa.string()),
            pa.field("content_sha256", pa.string()),
            pa.field("ingested_at", pa.timestamp("us", tz="UTC")),
            pa.field("vector", pa.list_(pa.float32(), dimension), nullable=False),
        ]
    )


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class DocumentStore:
    """One LanceDB table of chunks. Open with :meth:`open`; all methods are coroutines."""

    def __init__(self, table: Any, dimension: int) -> None:
        self._table = table
        self.dimension = dimension

    @classmethod
    async def open(
        cls,
        uri: str,
        table: str,
        dimension: int,
        *,
        storage_options: dict[str, str] | None = None,
        read_consistency: timedelta | None = None,
    ) -> DocumentStore:
        """Opens (creating when absent) the table; refuses one whose vectors have another dimension."""
        try:
            db = await lancedb.connect_async(
                uri, storage_options=storage_options or None, read_consistency_interval=read_consistency
            )
            try:
                handle = await db.open_table(table)
            except ValueError:  # not found: create it (exist_ok covers a concurrent creator)
                handle = await db.create_table(table, schema=_schema(dimension), exist_ok=True)
            existing = await handle.schema()
        except Exception as exc:
            raise RetrievalError(f"cannot open LanceDB table {table!r} at {uri}: {exc}") from exc
        if set(existing.names) != set(_schema(dimension).names):
            raise RetrievalError(
                f"LanceDB table {table!r} at {uri} has columns {existing.names}, not this version's "
                f"{_schema(dimension).names}; ingest into a new table (retrieval.table) or delete this one"
            )
        if getattr(existing.field("vector").type, "list_size", None) != dimension:
            raise RetrievalError(
                f"LanceDB table {table!r} at {uri} holds {existing.field('vector').type} vectors but the embedder "
                f"makes {dimension}-d ones; "
                "use another table name or re-ingest"
            )
        return cls(handle, dimension)

    async def count(self) -> int:
        return int(await self._table.count_rows())

    async def content_hashes(self, doc_ids: Sequence[str]) -> dict[str, str]:
        """Stored ``content_sha256`` per document id, for the ids that are present."""
        if not doc_ids:
            return {}
        where = f"doc_id IN ({', '.join(sql_literal(d) for d in doc_ids)}) AND chunk_index = 0"
        rows = await self._table.query().where(where).select(["doc_id", "content_sha256"]).to_list()
        return {row["doc_id"]: row["content_sha256"] for row in rows}

    async def upsert_document(
        self,
        doc_id: str,
        *,
        title: str,
        uri: str,
        content_sha256: str,
        chunks: Sequence[Chunk],
        vectors: npt.NDArray[np.float32],
    ) -> None:
        """Replaces every chunk of ``doc_id`` with ``chunks`` in one atomic commit."""
        now = datetime.now(UTC)
        rows = [
            {
                "chunk_id": f"{doc_id}#{chunk.index}",
                "doc_id": doc_id,
                "chunk_index": chunk.index,
                "section": chunk.section,
                "text": chunk.body,
                "title": title,
                "uri": uri,
                "content_sha256": content_sha256,
                "ingested_at": now,
                "vector": vector.tolist(),
            }
            for chunk, vector in zip(chunks, vectors, strict=True)
        ]
        data = pa.Table.from_pylist(rows, schema=_schema(self.dimension))
        try:
            await (
                self._table.merge_insert("chunk_id")
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .when_not_matched_by_source_delete(f"doc_id = {sql_literal(doc_id)}")
                .execute(data)
            )
        except Exception as exc:
            raise RetrievalError(f"writing document {doc_id!r} failed: {exc}") from exc

    async def delete_document(self, doc_id: str) -> None:
        await self._table.delete(f"doc_id = {sql_literal(doc_id)}")

    async def search(self, vector: npt.NDArray[np.float32], k: int) -> list[Passage]:
        """The ``k`` chunks nearest to ``vector`` by cosine similarity, best first."""
        columns = ["chunk_id", "doc_id", "section", "text", "title", "uri", "_distance"]
        try:
            rows = (
                await self._table.vector_search(vector.tolist())
                .distance_type("cosine")
                .select(columns)
                .limit(k)
                .to_list()
            )
        except Exception as exc:
            raise RetrievalError(f"vector search failed: {exc}") from exc
        return [
            Passage(
                chunk_id=r["chunk_id"],
                doc_id=r["doc_id"],
                section=r["section"] or "",
                text=r["text"],
                title=r["title"] or "",
                uri=r["uri"] or "",
                score=round(1.0 - float(r["_distance"]), 4),
            )
            for r in rows
        ]
