"""Exporting a sentence-transformers model to ONNX: the build step of the ``onnx`` embedder (``router embedder
export``, ``make setup``, the Docker build stage). Needs torch (the ``[train]`` extra), and ``onnx`` for int8;
serving never imports this module.

The graph maps tokens to the pooled, L2-normalised vector, so serving is one ONNX Runtime call. ``int8`` is dynamic
per-channel quantisation of the weights. Every export records how closely it agrees with sentence-transformers.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.embedder import (
    EXPORT_MANIFEST,
    EXPORT_VERSION,
    ONNX_FILES,
    ONNX_OPSET,
    TRAIN_EXTRA_HINT,
    EmbedderError,
    OnnxEmbedder,
    Precision,
    check_model_dir,
    default_model_path,
    fingerprint,
    model_name,
    progress_bars_off,
)

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def export_onnx(model_path: Path | None, directory: Path, *, int8: bool = False) -> dict[str, Any]:
    """Exports a sentence-transformers model (tokens -> pooled, L2-normalised vector) to ``directory``:
    ``model.onnx``, optionally ``model.int8.onnx``, ``tokenizer.json`` and ``embedder.json``. Runs offline in a few
    seconds. The directory is replaced whole, so a reader never sees half an export. Returns the manifest, which
    records how closely the export agrees with sentence-transformers."""
    source = model_path or default_model_path()
    model = _load_source(source)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        names = _trace(model, staging / ONNX_FILES["fp32"])
        model.tokenizer.backend_tokenizer.save(str(staging / "tokenizer.json"))
        manifest = _manifest(model, model_path, source, names)
        _write_manifest(staging, manifest)  # the int8 check below loads the export, manifest included
        if int8:
            _quantise_int8(staging)
            manifest["precisions"].append("int8")
        manifest["agreement"] = _measure_agreement(model, staging, manifest["precisions"])
        _write_manifest(staging, manifest)
        _replace_dir(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _load_source(source: Path) -> Any:
    check_model_dir(source)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise EmbedderError(f"exporting {source} to ONNX needs torch: {TRAIN_EXTRA_HINT}") from None
    progress_bars_off()
    model = SentenceTransformer(str(source), device="cpu", local_files_only=True).eval()
    if not getattr(model.tokenizer, "is_fast", False):
        raise EmbedderError(f"{source}: the ONNX backend needs a fast tokenizer (tokenizer.json)")
    return model


def _trace(model: Any, path: Path) -> list[str]:
    """Traces the model with pooling and normalisation into one graph at ``path``; returns its input names."""
    import torch

    names = [n for n in INPUTS if n in model.tokenizer.model_input_names]

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            features = self.model(dict(zip(names, tensors, strict=True)))["sentence_embedding"]
            return torch.nn.functional.normalize(features, p=2, dim=1)

    sample = model.tokenizer(["a short sample sentence", "and another"], padding=True, return_tensors="pt")
    axes = {name: {0: "batch", 1: "tokens"} for name in names} | {"embedding": {0: "batch"}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Python conditions it fixes at export
        torch.onnx.export(
            Pooled(), tuple(sample[n] for n in names), str(path), input_names=names, output_names=["embedding"],
            dynamic_axes=axes, opset_version=ONNX_OPSET, dynamo=False,
        )  # fmt: skip
    return names


def _manifest(model: Any, model_path: Path | None, source: Path, names: list[str]) -> dict[str, Any]:
    return {
        "name": model_name(model_path),
        "source": str(source),
        "fingerprint": fingerprint(source),
        "dimension": model.get_embedding_dimension(),
        "max_seq_length": model.max_seq_length,
        "inputs": names,
        "opset": ONNX_OPSET,
        "export_version": EXPORT_VERSION,
        "precisions": ["fp32"],
    }


def _write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    (directory / EXPORT_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


@contextmanager
def _root_logger_quiet() -> Iterator[None]:
    """ONNX Runtime's quantiser logs advice to pre-process the graph on the root logger (it changes nothing for this
    graph); the root logger is raised to ERROR while it runs and restored after."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _quantise_int8(staging: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per-channel scales: cosine to fp32 ~0.993 on benchmark questions, against ~0.966 per tensor, same speed.
    with _root_logger_quiet():
        quantize_dynamic(
            staging / ONNX_FILES["fp32"], staging / ONNX_FILES["int8"], weight_type=QuantType.QInt8, per_channel=True
        )


def _measure_agreement(model: Any, staging: Path, precisions: list[Precision]) -> dict[str, dict[str, float]]:
    reference = model.encode(AGREEMENT_TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    return {
        precision: agreement(reference, OnnxEmbedder.load(staging, precision=precision).encode(AGREEMENT_TEXTS))
        for precision in precisions
    }


def _replace_dir(staging: Path, directory: Path) -> None:
    if directory.exists():
        shutil.rmtree(directory)
    staging.rename(directory)


def agreement(reference: npt.NDArray[np.floating], vectors: npt.NDArray[np.floating]) -> dict[str, float]:
    """Cosine between matching rows of two sets of unit vectors (mean, min) and the largest component difference."""
    cosines = np.sum(np.asarray(reference, np.float64) * np.asarray(vectors, np.float64), axis=1)
    return {
        "mean_cosine": round(float(cosines.mean()), 6),
        "min_cosine": round(float(cosines.min()), 6),
        "max_abs_diff": float(np.abs(np.asarray(reference) - np.asarray(vectors)).max()),
    }


AGREEMENT_TEXTS = [
    "Who directed the film that won the Academy Award for Best Picture in 1998?",
    "What is the capital of Australia?",
    "how do i rotate the api key for the billing service",
    "Which river flows through both Vienna and Budapest?",
    "When was the company that makes the PlayStation founded?",
    "LoRA adapters are small low-rank matrices added to a frozen base model.",
    "Compare the population of Lagos with that of Cairo.",
    "error: connection reset by peer while uploading a 2 GB file",
    "Wer hat die Relativitätstheorie entwickelt?",
    "Is the sequel longer than the original novel?",
    "a",
    "What year did the author of 'The Old Man and the Sea' win the Nobel Prize in Literature, and for which work?",
]
