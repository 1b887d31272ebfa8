"""``router label`` against a fake vLLM (exact answers and faults) with a real LanceDB table and embedder."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from backends.documents import Chunk
from backends.generators import ChatGenerator
from backends.lancedb import DocumentStore
from backends.vllm import ChatClient
from models.embedder import Embedder
from models.outcomes import load_outcomes
from router.cli.labelling import Labeller, QuestionsError, label, read_questions
from tests.fakes.vllm import FakeVLLM

QUESTIONS = [
    {"id": "q1", "question": "What is the capital of France?", "answers": ["Paris is the capital of France"]},
    {"id": "q2", "question": "Which river flows through Paris?", "answers": ["Seine", "the Seine"]},
    {"question": "Who wrote Hamlet?", "gold": ["Shakespeare"]},
]


@pytest.fixture
async def store(tmp_path: Path, embedder: Embedder) -> DocumentStore:
    store = await DocumentStore.open(str(tmp_path / "db"), "chunks", embedder.dimension)
    chunks = [Chunk(0, "", "Paris is the capital of France; the Seine flows through it.")]
    await store.upsert_document(
        "paris",
        title="Paris",
        uri="test://paris",
        content_sha256="x",
        chunks=chunks,
        vectors=embedder.encode([c.text for c in chunks]),
    )
    return store


def _questions(tmp_path: Path) -> Path:
    path = tmp_path / "questions.jsonl"
    path.write_text("\n".join(json.dumps(q) for q in QUESTIONS))
    return path


async def test_labels_every_route_and_writes_trainable_outcomes(tmp_path: Path, store, embedder) -> None:
    fake = FakeVLLM(base_model="base", adapters={"ft": "/a/ft"})
    out = tmp_path / "outcomes.jsonl"
    async with httpx.AsyncClient(transport=fake.transport()) as http:
        generator = ChatGenerator(
            ChatClient(http, "http://vllm/v1"), base_model="base", ft_model="ft", max_tokens=16, temperature=0.0
        )
        labeller = Labeller(store, embedder, generator, top_k=2, split="dev_500")
        report = await label(read_questions(_questions(tmp_path)), labeller, out, concurrency=2)
    assert (report.labelled, report.already_done, report.failed) == (3, 0, {})
    rows = {row["qid"]: row for row in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {"q1", "q2", "line-3"}
    q1 = rows["q1"]  # the fake always answers "Paris is the capital of France."
    assert (q1["em_zero"], q1["em_single"], q1["em_multi"]) == (1.0, 1.0, 1.0)
    assert rows["q2"]["em_zero"] == 0.0 and rows["q2"]["f1_zero"] == 0.0
    assert all(q1[f"tokens_{s}"] > 0 and q1[f"latency_ms_{s}"] > 0 for s in ("zero", "single", "multi"))
    models = [json.loads(r.read())["model"] for r in fake.requests]
    assert sorted(models) == sorted(["ft", "base", "ft"] * 3)
    outcomes = load_outcomes(out, "dev_500")  # what router train reads
    assert outcomes.cost[0].tolist() == [0.0, 1.0, 1.0]


async def test_failed_questions_are_reported_not_written_and_retried_on_resume(tmp_path: Path, store, embedder) -> None:
    fake = FakeVLLM(base_model="base", adapters={"ft": "/a/ft"}, faults=[("status", 500)] * 3)  # outlasts 3 tries
    out = tmp_path / "outcomes.jsonl"
    questions = read_questions(_questions(tmp_path))
    async with httpx.AsyncClient(transport=fake.transport()) as http:
        generator = ChatGenerator(
            ChatClient(http, "http://vllm/v1"), base_model="base", ft_model="ft", max_tokens=16, temperature=0.0
        )
        labeller = Labeller(store, embedder, generator, top_k=2, split="dev_500")
        first = await label(questions, labeller, out, concurrency=1)
        assert first.labelled == 2 and len(first.failed) == 1
        assert "Internal server error" in next(iter(first.failed.values()))
        second = await label(questions, labeller, out, concurrency=1)
    assert (second.already_done, second.labelled, second.failed) == (2, 1, {})
    assert len(out.read_text().splitlines()) == 3


def test_malformed_questions_are_refused_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "ok?", "answers": ["a"]}\n{"question": "no answers"}\n')
    with pytest.raises(QuestionsError, match=r"q.jsonl:2"):
        read_questions(path)
