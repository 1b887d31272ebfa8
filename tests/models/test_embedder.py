"""The ONNX embedder (the serving default) makes sentence-transformers' vectors, without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.embedder import (
    EXPORT_MANIFEST,
    EmbedderError,
    OnnxEmbedder,
    SentenceTransformerEmbedder,
    default_onnx_dir,
    load_embedder,
    token_batches,
)
from models.onnx_export import export_onnx

TEXTS = [
    "Who directed the film that won Best Picture in 1998?",
    "a",
    "what is the capital of australia",
    "Wie heißt der längste Fluss Europas?",
    "LoRA " * 400,  # longer than the model's 256 tokens: truncated the same way
    "   leading and trailing spaces   ",
    "emoji 🚀 and symbols <>&%$#",
]


@pytest.fixture(scope="module")
def reference() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder.load()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("onnx") / "minilm"
    export_onnx(None, directory, int8=True)
    return directory


def test_onnx_vectors_equal_sentence_transformers(reference: SentenceTransformerEmbedder, exported: Path) -> None:
    onnx = OnnxEmbedder.load(exported, batch_size=3)  # 7 texts: three batches, sorted by length, put back in order
    expected = reference.encode(TEXTS)
    np.testing.assert_allclose(onnx.encode(TEXTS), expected, atol=1e-5)
    np.testing.assert_allclose(onnx.encode(TEXTS[:1]), expected[:1], atol=1e-5)  # one alone: no padding
    assert onnx.encode([]).shape == (0, 384)
    assert (onnx.name, onnx.dimension) == (reference.name, reference.dimension)


def test_int8_agrees_closely_and_the_manifest_says_how_closely(reference: SentenceTransformerEmbedder, exported: Path):
    int8 = OnnxEmbedder.load(exported, precision="int8")
    cosines = np.sum(int8.encode(TEXTS) * reference.encode(TEXTS), axis=1)
    assert cosines.min() > 0.95
    manifest = json.loads((exported / EXPORT_MANIFEST).read_text())
    assert manifest["precisions"] == ["fp32", "int8"]
    assert manifest["agreement"]["fp32"]["min_cosine"] > 0.99999
    assert 0.95 < manifest["agreement"]["int8"]["mean_cosine"] < 1.0


def test_missing_or_broken_exports_are_named(tmp_path: Path, exported: Path) -> None:
    with pytest.raises(EmbedderError, match=r"embedder\.json is missing.*router embedder export"):
        OnnxEmbedder.load(tmp_path)
    (tmp_path / EXPORT_MANIFEST).write_text("{not json")
    with pytest.raises(EmbedderError, match="unreadable"):
        OnnxEmbedder.load(tmp_path)
    fp32_only = tmp_path / "fp32"
    fp32_only.mkdir()
    for name in ("model.onnx", "tokenizer.json", EXPORT_MANIFEST):
        (fp32_only / name).write_bytes((exported / name).read_bytes())
    with pytest.raises(EmbedderError, match=r"model\.int8\.onnx is missing.*--int8"):
        OnnxEmbedder.load(fp32_only, precision="int8")
    with pytest.raises(EmbedderError, match="no sentence-transformers model"):
        default_onnx_dir(tmp_path)


def test_a_missing_export_is_made_on_load_and_then_reused(tmp_path: Path) -> None:
    directory = tmp_path / "export"
    embedder = load_embedder(onnx_dir=directory)
    assert isinstance(embedder, OnnxEmbedder)
    made = (directory / "model.onnx").stat().st_mtime_ns
    assert isinstance(load_embedder(onnx_dir=directory), OnnxEmbedder)
    assert (directory / "model.onnx").stat().st_mtime_ns == made
    manifest = json.loads((directory / EXPORT_MANIFEST).read_text())
    (directory / EXPORT_MANIFEST).write_text(json.dumps(manifest | {"export_version": 1}))
    load_embedder(onnx_dir=directory)  # an export made by an older version of this code is made again
    assert json.loads((directory / EXPORT_MANIFEST).read_text())["export_version"] == manifest["export_version"]
    assert (directory / "model.onnx").stat().st_mtime_ns != made
    assert isinstance(load_embedder(backend="torch"), SentenceTransformerEmbedder)


def test_serving_embeddings_do_not_import_torch(exported: Path) -> None:
    code = (
        "import sys; from pathlib import Path; import router.server.app, router.server.resources;"
        "from models.embedder import load_embedder;"
        f"e = load_embedder(onnx_dir=Path({str(exported)!r})); e.encode(['hello']);"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'sentence_transformers', 'transformers'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_token_batches_bound_texts_and_padded_tokens() -> None:
    lengths = [3, 5, 8, 8, 9, 40, 250, 256]
    batches = list(token_batches(lengths, max_texts=4, max_tokens=32))
    assert batches == [(0, 4), (4, 5), (5, 6), (6, 7), (7, 8)]  # 4 x 8 = 32 tokens fits; 9 would not
    for start, stop in batches:
        assert stop - start <= 4 and ((stop - start) * lengths[stop - 1] <= 32 or stop - start == 1)


def test_embedding_long_documents_gives_the_memory_back(exported: Path) -> None:
    """ONNX Runtime's arena kept the peak of a large batch for good: 64 chunks of 256 tokens left the process
    1.5 GB larger. Passes are bounded by tokens, and large ones hand their memory back."""

    def anonymous_mib() -> float:
        status = Path("/proc/self/status").read_text().splitlines()
        return next(int(line.split()[1]) for line in status if line.startswith("RssAnon:")) / 1024

    embedder = OnnxEmbedder.load(exported)
    embedder.encode(["warm up the session"])
    before = anonymous_mib()
    chunk = "Identifiers like get_user_by_id_v2 and config.max_tokens_per_request fill code-heavy docs. " * 20
    vectors = embedder.encode([chunk] * 64)
    assert vectors.shape == (64, embedder.dimension)
    assert anonymous_mib() - before < 150, (before, anonymous_mib())
