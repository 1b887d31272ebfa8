"""Robustness of the routing decision to rewordings of the question (``router eval``'s ``robustness`` section).

Five seeded perturbation families rewrite each question; the perturbed text goes through the same path as a live
query (embedding, ``predict_proba``, the policy at the configured thresholds) and its decision is compared with the
original question's:

- ``typos``: an adjacent-letter swap, a drop, an insertion or an adjacent-key substitution inside words of more than
  3 letters (each such word with probability ``TYPO_RATE``, at least one per question, never the first letter); the
  length moves by a character or so.
- ``casing``: the question in lower case, UPPER CASE or Title Case (one that changes the text).
- ``punctuation``: one or two of: toggle the trailing ``?``, remove the commas (or add one), double some spaces.
- ``paraphrase``: a template around the question ("Can you tell me: <q>", "<q> Please answer briefly.", ...) or a
  safe rewording of its opening ("What is" -> "What's", "Which" -> "What", "How many" -> "What number of").
- ``negation``: the first auxiliary negated ("When did" -> "When didn't", "was fought" -> "was not fought"), else
  "never" before an early past-tense verb ("Who wrote" -> "Who never wrote"), else a wrapper
  ("What is not the answer to this: <q>").

The first four keep the meaning, so the decision should stay the same, and the question's recorded outcomes still
apply: routed EM on the perturbed questions is valid and says what the changed decisions cost. Negation changes the
meaning, and the benchmark has no outcomes for negated questions, so the right route for them is unknown. What this
module reports for negation is how often the decision changes and how far the scores move *relative to the
meaning-preserving families* (``negation_vs_surface``): a router whose scores move no more on negation than on a typo
is not reading the meaning. It never claims that a changed decision on a negated question is right.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from models.baselines import oracle_choices
from models.outcomes import Outcomes
from models.routes import ROUTES

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
Encoder = Callable[[list[str]], npt.NDArray[np.floating]]
"""Question texts to embeddings (the embedder the evaluation uses)."""
Decider = Callable[[FloatArray, Sequence[str]], tuple[FloatArray, IntArray]]
"""Embeddings and their questions to (calibrated probabilities, route indices): the evaluation's ``route``."""
Perturbation = Callable[[str, random.Random], str]

TYPO_RATE = 0.15
KEYBOARD = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
EXAMPLES = 3


def _neighbours(char: str) -> str:
    """Keys left and right of ``char`` on a QWERTY keyboard (same case); ``char`` itself when not a letter."""
    lowered = char.lower()
    for row in KEYBOARD:
        at = row.find(lowered)
        if at >= 0:
            keys = row[max(at - 1, 0) : at] + row[at + 1 : at + 2]
            return keys.upper() if char.isupper() else keys
    return char


def _typo(word: str, rng: random.Random) -> str:
    """One typo at a letter other than the first: swap with the next letter, drop, insert a neighbour key, or
    substitute a neighbour key (the substitution when a swap would change nothing). Always changes the word."""
    at = rng.choice([i for i, c in enumerate(word) if c.isalpha()][1:])
    kind = rng.choice(("swap", "drop", "insert", "key"))
    after = word[at + 1 : at + 2]
    if kind == "swap" and after.isalpha() and after != word[at]:
        return word[:at] + after + word[at] + word[at + 2 :]
    if kind == "drop":
        return word[:at] + word[at + 1 :]
    if kind == "insert":
        return word[:at] + rng.choice(_neighbours(word[at])) + word[at:]
    return word[:at] + rng.choice(_neighbours(word[at])) + word[at + 1 :]


def typos(question: str, rng: random.Random) -> str:
    words = question.split(" ")
    eligible = [i for i, w in enumerate(words) if sum(c.isalpha() for c in w) > 3]
    if not eligible:
        return question
    chosen = [i for i in eligible if rng.random() < TYPO_RATE] or [rng.choice(eligible)]
    for i in chosen:
        words[i] = _typo(words[i], rng)
    return " ".join(words)


def _title(text: str) -> str:
    return " ".join(w[:1].upper() + w[1:].lower() for w in text.split(" "))


def casing(question: str, rng: random.Random) -> str:
    variants = [v for v in (question.lower(), question.upper(), _title(question)) if v != question]
    return rng.choice(variants) if variants else question


def _toggle_question_mark(question: str, _rng: random.Random) -> str:
    stripped = question.rstrip()
    return stripped[:-1].rstrip() if stripped.endswith("?") else stripped + "?"


def _commas(question: str, rng: random.Random) -> str:
    if "," in question:
        return question.replace(" ,", ",").replace(",", "")
    words = question.split(" ")
    if len(words) < 3:
        return question
    at = rng.randrange(1, len(words) - 1)
    return " ".join([*words[:at], words[at] + ",", *words[at + 1 :]])


def _spaces(question: str, rng: random.Random) -> str:
    words = question.split(" ")
    if len(words) < 2:
        return question + " "
    gaps = sorted(rng.sample(range(1, len(words)), k=max(1, (len(words) - 1) // 3)))
    for at in reversed(gaps):
        words.insert(at, "")
    return " ".join(words)


def punctuation(question: str, rng: random.Random) -> str:
    operations = rng.sample([_toggle_question_mark, _commas, _spaces], k=rng.choice((1, 2)))
    for operation in operations:
        question = operation(question, rng)
    return question


TEMPLATES = (
    "Can you tell me: {q}",
    "I'd like to know: {q}",
    "{q} Please answer briefly.",
    "Quick question: {q}",
    "Here is my question. {q}",
)
REWORDINGS = (
    (re.compile(r"^(What|Who|Where) is\b"), r"\1's"),
    (re.compile(r"^Which (?!of\b)"), "What "),
    (re.compile(r"^How many\b"), "What number of"),
)


def paraphrase(question: str, rng: random.Random) -> str:
    """A safe rewording of the opening (when one applies, half the time), else a template around the question."""
    reworded = [pattern.sub(replacement, question, count=1) for pattern, replacement in REWORDINGS]
    reworded = [text for text in reworded if text != question]
    if reworded and rng.random() < 0.5:
        return reworded[0]
    return rng.choice(TEMPLATES).format(q=question)


AUXILIARY_NEGATIONS = {
    "is": "isn't",
    "are": "aren't",
    "was": "wasn't",
    "were": "weren't",
    "do": "don't",
    "does": "doesn't",
    "did": "didn't",
    "can": "can't",
    "could": "couldn't",
    "has": "hasn't",
    "have": "haven't",
    "had": "hadn't",
    "will": "won't",
    "would": "wouldn't",
    "should": "shouldn't",
}
PAST_TENSE = frozenset(("wrote", "won", "made", "sang", "became", "began", "took", "gave", "built", "sold", "held"))
"""Irregular past tenses that open questions; regular ones are caught by their "-ed" ending."""
WH_WORDS = frozenset(("what", "who", "whom", "whose", "when", "where", "which", "why", "how"))
NEGATION_WRAPPER = "What is not the answer to this: {q}"


def negation_form(question: str) -> tuple[str, int]:
    """How ``negation`` negates: ``contraction`` (an auxiliary that opens the question or follows its wh-word:
    "Isn't Paris", "When didn't"), ``not`` (a later auxiliary: "was not fought"), ``never`` (before a past-tense
    verb in the first four words) or ``wrapper``; with the word index it acts on (-1 for the wrapper)."""
    words = [w.lower() for w in question.split(" ")]
    for i, word in enumerate(words):
        if word in AUXILIARY_NEGATIONS:
            inverted = i == 0 or (i == 1 and words[0] in WH_WORDS)
            return ("contraction" if inverted else "not"), i
    for i, word in enumerate(words[1:4], start=1):
        if word in PAST_TENSE or (word.endswith("ed") and len(word) > 4):
            return "never", i
    return "wrapper", -1


def negation(question: str, _rng: random.Random) -> str:
    form, at = negation_form(question)
    words = question.split(" ")
    if form == "contraction":
        negated = AUXILIARY_NEGATIONS[words[at].lower()]
        words[at] = negated[:1].upper() + negated[1:] if words[at][:1].isupper() else negated
    elif form == "not":
        words.insert(at + 1, "not")
    elif form == "never":
        words.insert(at, "never")
    else:
        return NEGATION_WRAPPER.format(q=question)
    return " ".join(words)


FAMILIES: dict[str, Perturbation] = {
    "typos": typos,
    "casing": casing,
    "punctuation": punctuation,
    "paraphrase": paraphrase,
    "negation": negation,
}
MEANING_PRESERVING = ("typos", "casing", "punctuation", "paraphrase")


def perturb(questions: Sequence[str], family: str, seed: int = 0) -> list[str]:
    """Each question perturbed by ``family``; seeded by (seed, family, question text), so a question gets the same
    perturbation whatever else is in the batch."""
    function = FAMILIES[family]
    return [function(q, random.Random(f"{seed}/{family}/{q}")) for q in questions]


@dataclass(frozen=True)
class Probe:
    """What the robustness section needs beyond the evaluation's data: the embedder, and how many questions."""

    encode: Encoder
    sample: int | None = None
    """Questions perturbed (a seeded random subset); None: all of them."""
    seed: int = 0
    families: tuple[str, ...] = tuple(FAMILIES)


@dataclass(frozen=True)
class Decisions:
    probabilities: FloatArray
    choices: IntArray


def _sample(n: int, size: int | None, seed: int) -> IntArray:
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def _share(mask: npt.NDArray[np.bool_]) -> float | None:
    return round(float(mask.mean()), 4) if mask.size else None


def _cosine(a: npt.NDArray[np.floating], b: npt.NDArray[np.floating]) -> float:
    dots = (a * b).sum(axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return round(float(dots.mean()), 4)


def _stability(outcomes: Outcomes, before: IntArray, after: IntArray) -> dict[str, Any]:
    """Decision unchanged, overall and by what the original decision was worth on the original question."""
    rows = np.arange(len(outcomes))
    unchanged = before == after
    correct = outcomes.em[rows, before] > 0
    cheapest = correct & (before == oracle_choices(outcomes))
    return {
        "decision_unchanged": _share(unchanged),
        "unchanged_when_correct": _share(unchanged[correct]),
        "unchanged_when_cheapest_correct": _share(unchanged[cheapest]),
        "unchanged_when_wrong": _share(unchanged[~correct]),
        "correct_rows": int(correct.sum()),
        "cheapest_correct_rows": int(cheapest.sum()),
    }


def _em_effect(outcomes: Outcomes, before: IntArray, after: IntArray) -> dict[str, Any]:
    """Routed EM with the perturbed decisions, scored on the original question's outcomes, and the paired change
    (mean and normal-approximation 95% interval of the per-question difference)."""
    rows = np.arange(len(outcomes))
    old, new = outcomes.em[rows, before], outcomes.em[rows, after]
    difference = new - old
    half = 1.96 * float(difference.std(ddof=1)) / np.sqrt(len(difference)) if len(difference) > 1 else 0.0
    mean = float(difference.mean())
    return {
        "em_original": round(float(old.mean()), 4),
        "em_perturbed": round(float(new.mean()), 4),
        "em_difference": round(mean, 4),
        "em_difference_ci": [round(mean - half, 4), round(mean + half, 4)],
        "flips_to_wrong": _share((old > 0) & (new == 0)),
        "flips_to_right": _share((old == 0) & (new > 0)),
        "mean_cost_original": round(float(outcomes.cost[rows, before].mean()), 4),
        "mean_cost_perturbed": round(float(outcomes.cost[rows, after].mean()), 4),
    }


def _family(
    family: str, outcomes: Outcomes, x: FloatArray, original: Decisions, decide: Decider, probe: Probe
) -> dict[str, Any]:
    texts = perturb(outcomes.questions, family, probe.seed)
    embeddings = np.asarray(probe.encode(texts), dtype=np.float64)
    probabilities, choices = decide(embeddings, texts)
    delta = np.abs(probabilities - original.probabilities)
    figures: dict[str, Any] = {
        "rows": len(texts),
        "meaning_preserving": family in MEANING_PRESERVING,
        "text_changed": _share(np.array([t != q for t, q in zip(texts, outcomes.questions, strict=True)])),
        "embedding_cosine": _cosine(x, embeddings),
        **_stability(outcomes, original.choices, choices),
        "mean_abs_delta_p": {route: round(float(delta[:, i].mean()), 4) for i, route in enumerate(ROUTES)},
        "mean_abs_delta_p_all": round(float(delta.mean()), 4),
        "mix": {route: round(float((choices == i).mean()), 4) for i, route in enumerate(ROUTES)},
        "em": _em_effect(outcomes, original.choices, choices) if family in MEANING_PRESERVING else None,
        "examples": _examples(outcomes.questions, texts, original.choices, choices),
    }
    if family == "negation":
        forms = [negation_form(q)[0] for q in outcomes.questions]
        figures["forms"] = {form: round(forms.count(form) / len(forms), 4) for form in sorted(set(forms))}
    return figures


def _examples(questions: Sequence[str], texts: Sequence[str], before: IntArray, after: IntArray) -> list[Any]:
    """The first few changed texts, preferring ones whose decision changed (at most one of those)."""
    changed = [i for i in range(len(texts)) if texts[i] != questions[i]]
    flipped = [i for i in changed if before[i] != after[i]][:1]
    picked = sorted(flipped + [i for i in changed if i not in flipped][: EXAMPLES - len(flipped)])
    return [
        {
            "original": questions[i],
            "perturbed": texts[i],
            "route": ROUTES[before[i]],
            "perturbed_route": ROUTES[after[i]],
        }
        for i in picked
    ]


def _pooled(families: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Meaning-preserving families pooled (row-weighted), and negation measured against them."""
    surface = [f for name, f in families.items() if name in MEANING_PRESERVING]
    report: dict[str, Any] = {}
    if surface:
        rows = sum(f["rows"] for f in surface)
        report["surface_decision_unchanged"] = round(
            sum(f["decision_unchanged"] * f["rows"] for f in surface) / rows, 4
        )
        report["surface_mean_abs_delta_p"] = round(
            sum(f["mean_abs_delta_p_all"] * f["rows"] for f in surface) / rows, 4
        )
    if "negation" in families and surface:
        negated = families["negation"]
        floor = report["surface_mean_abs_delta_p"]
        report["negation_vs_surface"] = {
            "decision_changed": round(1 - negated["decision_unchanged"], 4),
            "surface_decision_changed": round(1 - report["surface_decision_unchanged"], 4),
            "delta_p_ratio": round(negated["mean_abs_delta_p_all"] / floor, 2) if floor > 0 else None,
        }
    return report


def measure(outcomes: Outcomes, x: FloatArray, original: Decisions, decide: Decider, probe: Probe) -> dict[str, Any]:
    """The ``robustness`` report: per family figures on the (sampled) questions, then pooled figures."""
    index = _sample(len(outcomes), probe.sample, probe.seed)
    mask = np.zeros(len(outcomes), dtype=bool)
    mask[index] = True
    subset = outcomes.subset(mask)
    chosen = Decisions(original.probabilities[index], original.choices[index])
    families = {name: _family(name, subset, x[index], chosen, decide, probe) for name in probe.families}
    return {"rows": len(subset), "seed": probe.seed, "families": families, **_pooled(families)}
