"""Labelled routing outcomes: per question, whether each route answered correctly and what it cost.

The file format is the benchmark's ``outcomes.jsonl`` (one JSON object per line). Strategies map to routes:
``zero`` -> ``ft``, ``single`` -> ``rag``, ``multi`` -> ``both``. Correctness is ``em_<strategy>``; F1 is kept
for reporting. Cost is 0 for ``ft``, 1 for ``rag`` and ``ircot_steps`` for ``both`` (the benchmark's mean where a
row has none).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.routes import DEFAULT_COSTS, ROUTES

STRATEGY_OF_ROUTE = {"ft": "zero", "rag": "single", "both": "multi"}

Matrix = npt.NDArray[np.float64]


class OutcomesError(ValueError):
    """The outcomes file is missing, malformed, or selects no rows."""


@dataclass(frozen=True)
class Outcomes:
    """Rows of one split, in file order. Matrices have one column per route, in ``ROUTES`` order."""

    questions: list[str]
    em: Matrix
    f1: Matrix
    cost: Matrix
    datasets: list[str]
    source_sha256: str
    rows: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.questions)

    def subset(self, mask: npt.NDArray[np.bool_]) -> Outcomes:
        index = np.flatnonzero(mask)
        return Outcomes(
            questions=[self.questions[i] for i in index],
            em=self.em[index],
            f1=self.f1[index],
            cost=self.cost[index],
            datasets=[self.datasets[i] for i in index],
            source_sha256=self.source_sha256,
            rows=[self.rows[i] for i in index],
        )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _route_values(row: dict[str, Any], prefix: str, line: int) -> list[float]:
    try:
        return [float(row[f"{prefix}_{STRATEGY_OF_ROUTE[route]}"]) for route in ROUTES]
    except (KeyError, TypeError, ValueError) as exc:
        raise OutcomesError(f"line {line}: missing or non-numeric {prefix}_* field ({exc})") from exc


def _route_costs(row: dict[str, Any]) -> list[float]:
    steps = row.get("ircot_steps")
    both = float(steps) if steps is not None else DEFAULT_COSTS["both"]
    return [DEFAULT_COSTS["ft"], DEFAULT_COSTS["rag"], both]


def load_outcomes(path: Path, split: str | None = None) -> Outcomes:
    """Reads ``path``, keeping rows whose ``split`` equals ``split`` (all rows when None)."""
    if not path.is_file():
        raise OutcomesError(f"outcomes file not found: {path}")
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise OutcomesError(f"{path}:{line_no}: not JSON ({exc.msg})") from exc
            if split is None or row.get("split") == split:
                if not str(row.get("question") or "").strip():
                    raise OutcomesError(f"{path}:{line_no}: empty question")
                row["_line"] = line_no
                rows.append(row)
    if not rows:
        raise OutcomesError(f"{path}: no rows for split {split!r}")
    return Outcomes(
        questions=[str(row["question"]).strip() for row in rows],
        em=np.array([_route_values(row, "em", row["_line"]) for row in rows]),
        f1=np.array([_route_values(row, "f1", row["_line"]) for row in rows]),
        cost=np.array([_route_costs(row) for row in rows]),
        datasets=[str(row.get("dataset", "")) for row in rows],
        source_sha256=file_sha256(path),
        rows=rows,
    )
