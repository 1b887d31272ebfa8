"""Admin HTTP handlers for the document store: add or replace, look up and delete documents (``/v1/documents``).

Every handler is behind the admin key (``router.lib.auth``). Writes go through
``router.documents.ingestion.ingest_documents``, the function ``router ingest`` uses, so a document posted twice
unchanged is not re-embedded and a changed one has all its chunks replaced in one commit.

Ids containing ``/`` cannot travel in a path segment (``%2F`` is decoded before routing), and ids of documents
ingested from files are absolute paths: ``POST /v1/documents/delete`` takes ids in the body and works for any id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from urllib.parse import quote

import anyio
import structlog
from litestar import Controller, delete, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import FromPath, JSONBody

from backends.documents import Document, title_of
from backends.lancedb import DocumentInfo, DocumentStore
from models.embedder import Embedder
from router.documents.ingestion import IngestReport, ingest_documents
from router.lib import schema as schemas
from router.lib.auth import require_admin
from router.lib.settings import RetrievalSettings

log = structlog.get_logger("router.documents")

MAX_ID_CHARS = 4096
"""Longest document id accepted (the longest path Linux allows: file ids are absolute paths)."""


class DocumentIn(schemas.Request):
    id: str
    text: str
    title: str | None = None
    uri: str | None = None


class IngestRequest(schemas.Request):
    documents: list[DocumentIn]


class DeleteRequest(schemas.Request):
    ids: list[str]


class IngestedDocument(schemas.Value, frozen=True):
    id: str
    status: Literal["added", "updated", "unchanged"]
    chunks: int


class DocumentsIngested(schemas.Value, frozen=True):
    results: list[IngestedDocument]
    documents: int
    added: int
    updated: int
    unchanged: int
    chunks_written: int
    total_chunks: int


class DeletedDocument(schemas.Value, frozen=True):
    id: str
    deleted_chunks: int


class DeleteOutcome(schemas.Value, frozen=True):
    id: str
    status: Literal["deleted", "not_found"]
    deleted_chunks: int


class DocumentsDeleted(schemas.Value, frozen=True):
    results: list[DeleteOutcome]
    deleted_chunks: int


class StoredDocument(schemas.Value, frozen=True):
    id: str
    title: str
    uri: str
    chunks: int
    ingested_at: datetime
    content_sha256: str


def _check_count(field: str, count: int, limit: int) -> None:
    if not 1 <= count <= limit:
        raise ValidationException(f"'{field}' holds {count} items; send 1 to {limit}")


def _check_ids(field: str, ids: list[str], limit: int) -> None:
    """1 to ``limit`` ids, each non-empty, at most ``MAX_ID_CHARS`` long, none repeated."""
    _check_count(field, len(ids), limit)
    seen: set[str] = set()
    for n, doc_id in enumerate(ids):
        if not doc_id.strip():
            raise ValidationException(f"{field}[{n}]: the id is empty or whitespace")
        if len(doc_id) > MAX_ID_CHARS:
            raise ValidationException(f"{field}[{n}]: the id is {len(doc_id)} characters; the limit is {MAX_ID_CHARS}")
        if doc_id in seen:
            raise ValidationException(f"{field}[{n}]: id {doc_id!r} appears more than once in this request")
        seen.add(doc_id)


def _document(doc: DocumentIn) -> Document:
    title = (doc.title or "").strip() or title_of(doc.text, doc.id)
    uri = (doc.uri or "").strip() or f"urn:router:document:{quote(doc.id, safe=':@!$&()*+,;=-._~')}"
    return Document(id=doc.id, text=doc.text, title=title, uri=uri)


def documents_of(data: IngestRequest, cfg: RetrievalSettings) -> list[Document]:
    """The request's documents, defaults filled in; a ValidationException (400) names the first bad one."""
    _check_ids("documents", [doc.id for doc in data.documents], cfg.max_documents_per_request)
    for n, doc in enumerate(data.documents):
        where = f"documents[{n}] (id {doc.id!r})"
        if doc.id != doc.id.strip():
            raise ValidationException(f"{where}: the id has leading or trailing whitespace")
        if not doc.text.strip():
            raise ValidationException(f"{where}: 'text' is empty or whitespace")
        if len(doc.text) > cfg.max_document_chars:
            raise ValidationException(
                f"{where}: 'text' is {len(doc.text)} characters; the limit is {cfg.max_document_chars}"
            )
    return [_document(doc) for doc in data.documents]


def _ingested(report: IngestReport) -> DocumentsIngested:
    results = [IngestedDocument(r.id, r.status, r.chunks) for r in report.results]
    return DocumentsIngested(results=results, **report.counts())


def _stored(info: DocumentInfo | None, doc_id: str) -> StoredDocument:
    if info is None:
        raise NotFoundException(f"no document with id {doc_id!r}")
    return StoredDocument(info.doc_id, info.title, info.uri, info.chunks, info.ingested_at, info.content_sha256)


class DocumentsController(Controller):
    path = "/v1/documents"
    tags = ("documents",)
    guards = (require_admin,)

    @post("/", status_code=200, summary="Add or replace documents (idempotent per document)")
    async def ingest(
        self,
        data: JSONBody[IngestRequest],
        store: NamedDependency[DocumentStore],
        embedder: NamedDependency[Embedder],
        ingestion: NamedDependency[anyio.CapacityLimiter],
        state: State,
    ) -> DocumentsIngested:
        cfg: RetrievalSettings = state.settings.retrieval
        report = await ingest_documents(
            documents_of(data, cfg),
            store,
            embedder,
            max_chars=cfg.chunk_max_chars,
            overlap_chars=cfg.chunk_overlap_chars,
            limiter=ingestion,
        )
        log.info("documents_ingested", **{k: v for k, v in report.counts().items() if k != "total_chunks"})
        return _ingested(report)

    @get("/{doc_id:str}", summary="One document's metadata and chunk count")
    async def info(self, doc_id: FromPath[str], store: NamedDependency[DocumentStore]) -> StoredDocument:
        return _stored(await store.document_info(doc_id), doc_id)

    @delete("/{doc_id:str}", status_code=200, summary="Delete a document (ids without '/'; else POST .../delete)")
    async def delete_one(self, doc_id: FromPath[str], store: NamedDependency[DocumentStore]) -> DeletedDocument:
        deleted = await store.delete_document(doc_id)
        if not deleted:
            raise NotFoundException(f"no document with id {doc_id!r}")
        log.info("documents_deleted", documents=1, deleted_chunks=deleted)
        return DeletedDocument(id=doc_id, deleted_chunks=deleted)

    @post("/delete", status_code=200, summary="Delete documents by id (any id, '/' included)")
    async def delete_many(
        self, data: JSONBody[DeleteRequest], store: NamedDependency[DocumentStore], state: State
    ) -> DocumentsDeleted:
        _check_ids("ids", data.ids, state.settings.retrieval.max_documents_per_request)
        results = []
        for doc_id in data.ids:
            deleted = await store.delete_document(doc_id)
            results.append(DeleteOutcome(doc_id, "deleted" if deleted else "not_found", deleted))
        total = sum(r.deleted_chunks for r in results)
        log.info("documents_deleted", documents=sum(r.status == "deleted" for r in results), deleted_chunks=total)
        return DocumentsDeleted(results=results, deleted_chunks=total)
