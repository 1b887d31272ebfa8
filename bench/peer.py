"""The peer: the same routing decision through aurelio's semantic-router (its ``IndexedRouter``, local index), on
the same ONNX encoder.

Run by ``python -m bench`` in its own virtualenv (semantic-router's dependencies are not ours), with this repo on
PYTHONPATH: ``python -m bench.peer EXPORT_DIR``. Prints one JSON line.

semantic-router routes by similarity to example utterances. Each route gets the benchmark sample's ``dev_500``
questions for which it is the cheapest route that answered correctly; both routers then decide the sample's
``test`` questions in this process, one at a time, so the figures compare routing cost, not HTTP.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from semantic_router import Route
from semantic_router.encoders.base import DenseEncoder
from semantic_router.routers import IndexedRouter

from bench.timing import stats, timed
from models.bundle import default_bundle_dir, load_bundle, load_thresholds
from models.embedder import OnnxEmbedder
from models.policy import decide
from models.routes import ROUTES

SAMPLE = Path(__file__).resolve().parents[1] / "tests" / "data" / "outcomes_sample.jsonl"
PREFIX = {"ft": "zero", "rag": "single", "both": "multi"}


class SharedEncoder(DenseEncoder):
    """semantic-router's encoder interface over our ONNX embedder."""

    name: str = "all-MiniLM-L6-v2-onnx"
    score_threshold: float = 0.3
    embedder: Any = None

    def __call__(self, docs: list[Any]) -> list[list[float]]:
        return [list(map(float, v)) for v in self.embedder.encode([str(d) for d in docs])]


def main(export_dir: str) -> None:
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]
    train = [r for r in rows if r["split"] == "dev_500"]
    test = [r["question"] for r in rows if r["split"] == "test"]
    embedder = OnnxEmbedder.load(Path(export_dir))
    utterances: dict[str, list[str]] = {route: [] for route in ROUTES}
    for row in train:
        best = next((route for route in ROUTES if row[f"em_{PREFIX[route]}"]), None)
        if best:
            utterances[best].append(row["question"])
    routes = [Route(name=name, utterances=texts) for name, texts in utterances.items() if texts]
    peer = IndexedRouter(encoder=SharedEncoder(embedder=embedder), routes=routes)

    bundle = load_bundle(default_bundle_dir())
    policy = bundle.policy(load_thresholds(default_bundle_dir() / "thresholds.json"))

    def ours(question: str) -> str:
        vector = embedder.encode([question])
        p = bundle.classifier.predict_proba(vector, [question])[0]
        return decide(dict(zip(ROUTES, map(float, p), strict=True)), policy)

    def over_test(decide_one: Callable[[str], object]) -> list[float]:
        questions = itertools.cycle(test)
        return timed(lambda: decide_one(next(questions)), len(test))

    theirs_seconds, ours_seconds = [], []
    for _ in range(3):  # alternate, so drift in the machine's speed hits both alike
        theirs_seconds += over_test(peer)
        ours_seconds += over_test(ours)
    embed = over_test(lambda q: embedder.encode([q]))
    theirs, mine, floor = stats(theirs_seconds), stats(ours_seconds), stats(embed)
    note = (
        f"ours {mine['p50_ms'] - floor['p50_ms']:.3f} ms, semantic-router {theirs['p50_ms'] - floor['p50_ms']:.3f} ms"
    )
    print(
        json.dumps(
            {
                "version": metadata.version("semantic-router"),
                "utterances": {k: len(v) for k, v in utterances.items()},
                "questions": len(test),
                "ours": mine,
                "semantic_router": theirs,
                "embed": floor,
                "overhead_note": note,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
