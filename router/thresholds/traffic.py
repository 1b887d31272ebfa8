"""This replica's recent traffic as the thresholds see it: the route scores of its latest decisions, for what-if
evaluation and calibration on traffic (``POST /v1/thresholds/evaluate|calibrate`` with ``source: traffic``). The
wiring feeds it every routing record's scores."""

from __future__ import annotations

from collections import deque

RECENT_DECISIONS = 10_000
"""Decisions kept (this process only; the durable routing log keeps them all)."""


class RecentScores:
    """The ``(ft, rag, both)`` scores of the latest :data:`RECENT_DECISIONS` decisions, oldest first."""

    def __init__(self, size: int = RECENT_DECISIONS) -> None:
        self._rows: deque[tuple[float, float, float]] = deque(maxlen=size)

    def add(self, ft: float, rag: float, both: float) -> None:
        self._rows.append((ft, rag, both))

    def latest(self, window: int | None = None) -> list[tuple[float, float, float]]:
        """The last ``window`` decisions' scores (all kept when None), oldest first."""
        rows = list(self._rows)
        return rows[-window:] if window else rows

    def __len__(self) -> int:
        return len(self._rows)
