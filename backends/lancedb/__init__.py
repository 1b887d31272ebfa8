"""LanceDB adapters: the document store (chunks and their embeddings; vector, BM25 and hybrid search) and the
append-only tables of the routing log, with the SQL helpers both use."""

from backends.lancedb.documents import DocumentStore
from backends.lancedb.sql import filter_predicate, sql_literal, timestamp_literal
from backends.types import DocumentInfo, Filters, Passage, SearchMode

__all__ = [
    "DocumentInfo",
    "DocumentStore",
    "Filters",
    "Passage",
    "SearchMode",
    "filter_predicate",
    "sql_literal",
    "timestamp_literal",
]
