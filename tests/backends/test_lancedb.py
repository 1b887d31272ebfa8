from __future__ import annotations

from pathlib import Path

import lancedb
import numpy as np
import pytest

from backends.documents import Chunk
from backends.errors import RetrievalError
from backends.lancedb import DocumentStore, filter_predicate
from backends.lancedb.ranking import reciprocal_rank_fusion
from models.embedder import Embedder

# The query "XJ-9000" embeds closer to the chunks about sibling models than to the one that names it in passing.
PRODUCT_DOCS = {
    "care": "Wipe the housing with a soft, dry cloth and never use solvents; this applies to the XJ-9000 too.",
    "xj-9001": "The XJ-9001 is the newest model in the series.",
    "xj-9010": "The XJ-9010 model replaced the older XJ-9001.",
    "xj-9100": "XJ-9100 models ship with a larger display.",
    "xj-900": "Model XJ-900 was the first of the series.",
    "codes": "Our product codes encode the series and the generation of each model.",
    "serials": "Serial numbers are printed on a label under the device.",
    "firmware": "Firmware 9.0 introduced a new power-saving mode.",
}


async def _upsert(store: DocumentStore, embedder: Embedder, doc_id: str, texts: list[str]) -> None:
    chunks = [Chunk(i, "", text) for i, text in enumerate(texts)]
    await store.upsert_document(
        doc_id,
        title=doc_id.title(),
        uri=f"test://{doc_id}",
        content_sha256=str(hash(tuple(texts))),
        chunks=chunks,
        vectors=embedder.encode(texts),
    )


async def test_search_finds_the_relevant_chunk(tmp_path: Path, embedder: Embedder) -> None:
    store = await DocumentStore.open(str(tmp_path / "db"), "chunks", embedder.dimension)
    await _upsert(store, embedder, "cats", ["Cats are small domesticated felines.", "Cats purr when content."])
    await _upsert(store, embedder, "o'reilly", ["The GPU serves the language model with paged attention."])
    assert await store.count() == 3
    hits = await store.search(embedder.encode(["How does a GPU serve an LLM?"])[0], k=2)
    assert hits[0].doc_id == "o'reilly" and hits[0].chunk_id == "o'reilly#0"
    assert hits[0].score > hits[1].score
    assert hits[0].uri == "test://o'reilly"
    assert hits[0].text == "The GPU serves the language model with paged attention."


async def test_reingest_replaces_a_document_atomically(tmp_path: Path, embedder: Embedder) -> None:
    store = await DocumentStore.open(str(tmp_path / "db"), "chunks", embedder.dimension)
    await _upsert(store, embedder, "doc", ["one", "two", "three"])
    await _upsert(store, embedder, "other", ["keep me"])
    await _upsert(store, embedder, "doc", ["uno"])
    assert await store.count() == 2
    found = await store.documents_info(["doc", "other", "absent"])
    assert set(found) == {"doc", "other"} and (found["doc"].chunks, found["other"].chunks) == (1, 1)
    await store.delete_document("doc")
    assert await store.count() == 1


async def test_table_with_other_dimension_is_refused(tmp_path: Path) -> None:
    await DocumentStore.open(str(tmp_path / "db"), "chunks", 8)
    with pytest.raises(RetrievalError, match="8"):
        await DocumentStore.open(str(tmp_path / "db"), "chunks", 384)


async def test_empty_table_returns_no_passages(tmp_path: Path) -> None:
    store = await DocumentStore.open(str(tmp_path / "db"), "chunks", 4)
    assert await store.search(np.ones(4, dtype=np.float32), k=3) == []


async def test_table_from_another_schema_is_refused_with_a_hint(tmp_path: Path) -> None:
    import pyarrow as pa

    db = await lancedb.connect_async(str(tmp_path / "db"))
    old = pa.schema([pa.field("id", pa.string()), pa.field("vector", pa.list_(pa.float32(), 4))])
    await db.create_table("chunks", schema=old)
    with pytest.raises(RetrievalError, match="new table"):
        await DocumentStore.open(str(tmp_path / "db"), "chunks", 4)


async def _product_store(tmp_path: Path, embedder: Embedder) -> DocumentStore:
    store = await DocumentStore.open(str(tmp_path / "db"), "chunks", embedder.dimension)
    for doc_id, text in PRODUCT_DOCS.items():
        await _upsert(store, embedder, doc_id, [text])
    return store


def test_reciprocal_rank_fusion_sums_reciprocal_ranks() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "d", "e", "f", "a"]])
    expected = [
        ("b", 1 / 62 + 1 / 61),
        ("a", 1 / 61 + 1 / 65),
        ("d", 1 / 62),
        ("c", 1 / 63),  # ties with e: the id seen first (in the earlier list) comes first
        ("e", 1 / 63),
        ("f", 1 / 64),
    ]
    assert [item for item, _ in fused] == [item for item, _ in expected]
    assert [score for _, score in fused] == pytest.approx([score for _, score in expected])
    assert reciprocal_rank_fusion([["x", "y", "x"]], k=0) == [("x", 1.0), ("y", 0.5)]  # a repeat counts once
    assert reciprocal_rank_fusion([]) == []


async def test_text_search_finds_an_exact_code_that_vector_search_ranks_low(tmp_path: Path, embedder: Embedder) -> None:
    store = await _product_store(tmp_path, embedder)
    query = embedder.encode(["XJ-9000"])[0]
    by_vector = [p.doc_id for p in await store.search(query, k=8)]
    assert by_vector.index("care") >= 2

    by_text = await store.search(None, k=3, mode="text", query_text="XJ-9000")
    assert by_text[0].doc_id == "care"
    assert by_text[0].text == PRODUCT_DOCS["care"] and by_text[0].uri == "test://care"
    assert by_text[0].score > by_text[1].score > 0  # BM25: "9000" is rarer than "xj"


async def test_hybrid_search_ranks_the_union_by_rrf(tmp_path: Path, embedder: Embedder) -> None:
    store = await _product_store(tmp_path, embedder)
    query, text = embedder.encode(["XJ-9000 model"])[0], "XJ-9000 model"
    for k in (3, 8):
        vector_ids = [p.chunk_id for p in await store.search(query, 2 * k)]
        text_ids = [p.chunk_id for p in await store.search(None, 2 * k, mode="text", query_text=text)]
        expected = reciprocal_rank_fusion([vector_ids, text_ids])[:k]
        hybrid = await store.search(query, k, mode="hybrid", query_text=text)
        assert [p.chunk_id for p in hybrid] == [chunk_id for chunk_id, _ in expected]
        assert [p.score for p in hybrid] == pytest.approx([score for _, score in expected], abs=1e-6)
    assert {p.chunk_id for p in hybrid} == set(vector_ids) | set(text_ids)
    assert len(text_ids) < len(vector_ids)  # only chunks with a query term match the text search
    assert hybrid[0].doc_id != "care" and [p.doc_id for p in hybrid].index("care") < vector_ids.index("care#0")


async def test_text_search_sees_writes_made_after_its_index_was_built(tmp_path: Path, embedder: Embedder) -> None:
    store = await _product_store(tmp_path, embedder)
    assert [p.doc_id for p in await store.search(None, 5, mode="text", query_text="warranty")] == []  # builds it
    await _upsert(store, embedder, "warranty", ["Every XJ model carries a three-year warranty."])
    await _upsert(store, embedder, "care", ["Wipe the housing with a soft cloth."])  # no longer names XJ-9000
    await store.delete_document("xj-9001")
    table = await (await lancedb.connect_async(str(tmp_path / "db"))).open_table("chunks")
    (fts,) = [ix for ix in await table.list_indices() if ix.index_type == "FTS" and list(ix.columns) == ["text"]]
    assert fts.num_unindexed_rows == 2  # the two rows written since: searched without the index
    assert [p.doc_id for p in await store.search(None, 5, mode="text", query_text="warranty")] == ["warranty"]
    hits = {p.doc_id for p in await store.search(None, 10, mode="text", query_text="XJ-9000")}
    assert "care" not in hits and "xj-9001" not in hits and "warranty" in hits


async def test_filters_restrict_every_mode(tmp_path: Path, embedder: Embedder) -> None:
    store = await _product_store(tmp_path, embedder)
    await _upsert(store, embedder, "o'reilly", ["The XJ-9000 book from O'Reilly covers the XJ-9010 as well."])
    query = embedder.encode(["XJ-9000"])[0]
    for mode in ("vector", "text", "hybrid"):
        hits = await store.search(query, 5, mode=mode, query_text="XJ-9000", filters={"doc_id": "o'reilly"})
        assert [p.doc_id for p in hits] == ["o'reilly"], mode
        hits = await store.search(query, 5, mode=mode, query_text="XJ-9000", filters={"doc_id": ["xj-900", "codes"]})
        assert {p.doc_id for p in hits} <= {"xj-900", "codes"} and hits, mode
        hits = await store.search(
            query, 5, mode=mode, query_text="XJ-9000", filters={"title": "O'Reilly", "uri": "test://o'reilly"}
        )
        assert [p.doc_id for p in hits] == ["o'reilly"], mode
        injected = {"doc_id": "x' OR '1'='1"}
        assert await store.search(query, 5, mode=mode, query_text="XJ-9000", filters=injected) == [], mode
    assert await store.exact_search(query, 5, filters={"doc_id": "serials"}) != []


def test_filter_predicate_is_built_from_allowed_columns_and_escaped_values() -> None:
    assert filter_predicate(None) is None and filter_predicate({}) is None
    assert filter_predicate({"uri": "u", "doc_id": ["a", "o'b"]}) == "doc_id IN ('a', 'o''b') AND uri = 'u'"
    assert filter_predicate({"title": "x' OR '1'='1"}) == "title = 'x'' OR ''1''=''1'"
    with pytest.raises(ValueError, match=r"\['section', 'text'\]; allowed columns: doc_id, uri, title"):
        filter_predicate({"text": "a", "section": "b"})
    with pytest.raises(ValueError, match="no values"):
        filter_predicate({"doc_id": []})
    with pytest.raises(ValueError, match="string or a list of strings"):
        filter_predicate({"doc_id": 3})  # type: ignore[dict-item]


async def test_search_arguments_are_checked(tmp_path: Path) -> None:
    store = await DocumentStore.open(str(tmp_path / "db"), "chunks", 4)
    vector = np.ones(4, dtype=np.float32)
    with pytest.raises(ValueError, match="text search needs a non-empty query_text"):
        await store.search(vector, 3, mode="text")
    with pytest.raises(ValueError, match="hybrid search needs a non-empty query_text"):
        await store.search(vector, 3, mode="hybrid", query_text="  ")
    with pytest.raises(ValueError, match="hybrid search needs a query vector"):
        await store.search(None, 3, mode="hybrid", query_text="cats")
    with pytest.raises(ValueError, match="unknown search mode 'bm25'"):
        await store.search(vector, 3, mode="bm25", query_text="cats")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k must be >= 1"):
        await store.search(vector, 0)
    with pytest.raises(ValueError, match="allowed columns"):
        await store.search(vector, 3, filters={"chunk_id": "a#0"})
    assert await store.search(None, 3, mode="text", query_text="cats") == []  # empty table
    assert await store.search(vector, 3, mode="hybrid", query_text="cats") == []
