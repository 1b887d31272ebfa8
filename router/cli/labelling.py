"""``router label``: run every question through all three routes against the configured backends, score each
answer against the references, and write an outcomes file (the benchmark's schema) for ``router train``.

Questions file: JSONL, one ``{"id"?, "question", "answers": [...]}`` per line (``gold`` is accepted for
``answers``; the id defaults to ``line-<n>``). Each output row is written and flushed as soon as its three routes are
done, so an interrupted run resumes where it stopped: ids already in the output are skipped. A question whose route
failed is not written (it is retried on the next run) and is reported.

Costs recorded per route: retrieval calls (``ft`` 0, ``rag`` 1, ``both`` 1 in this service, stored as
``ircot_steps``), prompt and completion tokens, and latency.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from tqdm import tqdm

from backends.errors import BackendError
from backends.generators import Generator
from backends.lancedb import DocumentStore
from models.embedder import Embedder
from models.outcomes import STRATEGY_OF_ROUTE
from models.routes import ROUTES
from models.scoring import exact_match, normalise, token_f1


class QuestionsError(ValueError):
    """The questions file is malformed; the message names the line."""


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answers: list[str]


@dataclass
class LabelReport:
    questions: int = 0
    labelled: int = 0
    already_done: int = 0
    failed: dict[str, str] = field(default_factory=dict)


def read_questions(path: Path) -> list[Question]:
    questions = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            answers = row.get("answers", row.get("gold"))
            question = Question(str(row.get("id") or f"line-{line_no}"), str(row["question"]).strip(), list(answers))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise QuestionsError(f"{path}:{line_no}: expected {{'question', 'answers': [...]}} ({exc})") from exc
        if not question.question or not question.answers:
            raise QuestionsError(f"{path}:{line_no}: empty question or no reference answers")
        questions.append(question)
    return questions


def done_ids(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {json.loads(line)["qid"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}


@dataclass
class Labeller:
    store: DocumentStore
    embedder: Embedder
    generator: Generator
    top_k: int
    split: str

    async def row(self, question: Question) -> dict[str, Any]:
        start = time.perf_counter()
        vectors = await anyio.to_thread.run_sync(self.embedder.encode, [question.question])
        passages = await self.store.search(vectors[0], self.top_k)
        row: dict[str, Any] = {
            "split": self.split,
            "dataset": "labelled",
            "qid": question.id,
            "question": question.question,
            "gold": question.answers,
            "retrieval_ms": round((time.perf_counter() - start) * 1000, 2),
        }
        for route in ROUTES:
            row |= await self._route(question, route, passages if route != "ft" else [])
        row["ircot_steps"] = 1  # ``both`` retrieves once here (the benchmark's multi-step IRCoT retrieves more)
        return row

    async def _route(self, question: Question, route: str, passages: Sequence[Any]) -> dict[str, Any]:
        start = time.perf_counter()
        generation = await self.generator.generate(question.question, route, passages)
        strategy = STRATEGY_OF_ROUTE[route]
        answer = normalise(generation.text)
        return {
            f"pred_{strategy}": generation.text,
            f"em_{strategy}": exact_match(generation.text, question.answers),
            f"f1_{strategy}": token_f1(generation.text, question.answers),
            f"acc_{strategy}": float(any(normalise(ref) in answer for ref in question.answers)),
            f"tokens_{strategy}": (generation.prompt_tokens or 0) + (generation.completion_tokens or 0),
            f"latency_ms_{strategy}": round((time.perf_counter() - start) * 1000, 2),
        }


async def label(
    questions: list[Question], labeller: Labeller, out: Path, *, concurrency: int, progress: bool = False
) -> LabelReport:
    finished = done_ids(out)
    todo = [q for q in questions if q.id not in finished]
    report = LabelReport(questions=len(questions), already_done=len(questions) - len(todo))
    limiter = anyio.Semaphore(concurrency)
    bar = tqdm(total=len(todo), desc="labelling", unit="question", disable=not progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", encoding="utf-8") as sink:

        async def one(question: Question) -> None:
            async with limiter:
                try:
                    row = await labeller.row(question)
                except BackendError as exc:
                    report.failed[question.id] = f"{type(exc).__name__}: {exc}"
                else:
                    sink.write(json.dumps(row) + "\n")
                    sink.flush()
                    report.labelled += 1
                bar.update()

        async with anyio.create_task_group() as group:
            for question in todo:
                group.start_soon(one, question)
    bar.close()
    return report
