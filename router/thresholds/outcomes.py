"""A labelled outcomes file scored by the live bundle: what calibrate and evaluate use with ``"source": "outcomes"``.

The file is ``thresholds.outcomes_file`` (the benchmark's ``outcomes.jsonl`` schema, which ``router label`` writes
for a team's own questions); a request may pick one of its splits. Scoring embeds every question once, so the first
call on a file takes a while (about 10 s per 1,000 questions on two cores); the scores are kept until the file or
the bundle changes. Only score rows the bundle was not trained on (for the shipped bundle: not ``dev_500``), or the
measured figures flatter it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import anyio
import numpy as np
import numpy.typing as npt
import structlog

from models.bundle import Bundle
from models.embedder import Embedder
from models.outcomes import OutcomesError, load_outcomes
from models.tuning import Labels

log = structlog.get_logger("router.thresholds.outcomes")


class NoOutcomes(ValueError):
    """No outcomes file is configured, or it cannot be read or has no rows for the split (a 400 for the caller)."""


@dataclass(frozen=True)
class ScoredOutcomes:
    probabilities: npt.NDArray[np.float64]
    labels: Labels
    description: str
    """Where the rows came from, for the response: ``outcomes <file> (split test, 3000 questions)``."""


class OutcomesScorer:
    """Scores the configured labelled outcomes file with this service's embedder and bundle, once per file version
    and split (cached), for what-if and calibration on outcomes."""

    def __init__(self, path: Path | None, default_split: str | None, embedder: Embedder, bundle: Bundle) -> None:
        self.path = path
        self.default_split = default_split
        self.embedder = embedder
        self.bundle = bundle
        self._cache: dict[tuple[object, ...], ScoredOutcomes] = {}
        self._lock = anyio.Lock()

    async def scored(self, split: str | None) -> ScoredOutcomes:
        if self.path is None:
            raise NoOutcomes("no labelled outcomes file is configured (thresholds.outcomes_file)")
        split = split or self.default_split
        try:
            stat = self.path.stat()
        except OSError as exc:
            raise NoOutcomes(f"outcomes file {self.path} cannot be read ({exc.strerror})") from exc
        key = (stat.st_mtime_ns, stat.st_size, split, self.bundle.version)
        async with self._lock:  # one scoring at a time; the others then find it cached
            if key not in self._cache:
                self._cache = {key: await anyio.to_thread.run_sync(self._score, split)}
            return self._cache[key]

    def _score(self, split: str | None) -> ScoredOutcomes:
        assert self.path is not None
        try:
            outcomes = load_outcomes(self.path, split)
        except OutcomesError as exc:
            raise NoOutcomes(str(exc)) from exc
        vectors = self.embedder.encode(outcomes.questions)
        probabilities = self.bundle.classifier.predict_proba(vectors, outcomes.questions)
        where = f"split {split}" if split else "all splits"
        log.info("outcomes_scored", file=str(self.path), split=split, questions=len(outcomes))
        return ScoredOutcomes(
            np.asarray(probabilities, dtype=np.float64),
            Labels(outcomes.em, outcomes.cost),
            f"outcomes {self.path} ({where}, {len(outcomes)} questions)",
        )
