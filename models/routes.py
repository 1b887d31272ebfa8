"""Route names and their default costs, shared by the classifier, the policy and the service."""

from __future__ import annotations

from typing import Final, Literal, get_args

Route = Literal["ft", "rag", "both"]
"""``ft``: the fine-tuned model alone; ``rag``: retrieval + base model; ``both``: retrieval + fine-tuned model."""

ROUTES: Final[tuple[Route, ...]] = get_args(Route)

Step = Literal["ft", "rag", "both", "extractive"]
"""What can answer: a route, or the extractive generator (retrieved sentences, no LLM) as the last resort."""

DEFAULT_COSTS: Final[dict[Route, float]] = {"ft": 0.0, "rag": 1.0, "both": 3.35}
"""Retrieval calls per answer, as in the benchmark: 0, 1, and the mean IRCoT step count for ``both``."""
