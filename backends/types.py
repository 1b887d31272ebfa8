"""Vendor-neutral values the backends exchange with their callers: retrieved passages, stored documents, search
modes and metadata filters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

SearchMode = Literal["vector", "text", "hybrid"]
Filters = Mapping[str, str | Sequence[str]]
"""Column -> one value (equality) or several (IN); columns are ANDed. Only ``FILTER_COLUMNS`` may be named."""
FILTER_COLUMNS = ("doc_id", "uri", "title")


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk; ``score`` depends on the search mode (see the module docstring), higher is better."""

    chunk_id: str
    doc_id: str
    section: str
    text: str
    title: str
    uri: str
    score: float


@dataclass(frozen=True)
class DocumentInfo:
    """What the table holds for one document: its metadata (from chunk 0) and its chunk count."""

    doc_id: str
    title: str
    uri: str
    chunks: int
    ingested_at: datetime
    content_sha256: str
