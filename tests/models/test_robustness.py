from __future__ import annotations

import json
import random
import re
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from models.bundle import default_bundle_dir
from models.classifier import Calibrator, RouteClassifier
from models.evaluation import route
from models.outcomes import Outcomes
from models.policy import Policy
from models.robustness import (
    FAMILIES,
    MEANING_PRESERVING,
    NEGATION_WRAPPER,
    TEMPLATES,
    Decisions,
    Probe,
    _typo,
    casing,
    measure,
    negation,
    negation_form,
    paraphrase,
    perturb,
)
from router.cli import build_parser, main
from router.lib.settings import get_settings

QUESTIONS = [
    "Who wrote the novel Pride and Prejudice?",
    "What is the capital city of Australia?",
    "Which country hosted the 2000 Summer Olympics?",
    "The Hundred Years War was fought between which two countries?",
    "How many moons does Jupiter have?",
    "Where was the composer Frederic Chopin born?",
]


class FixedRandom(random.Random):
    """``random()`` always returns ``value`` (choices stay seeded)."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def test_every_family_is_seeded_and_independent_of_the_batch() -> None:
    for family in FAMILIES:
        once = perturb(QUESTIONS, family, seed=3)
        assert once == perturb(QUESTIONS, family, seed=3), family
        assert once[2:] == perturb(QUESTIONS[2:], family, seed=3), family
        assert all(p != q for p, q in zip(once, QUESTIONS, strict=True)), family
    assert perturb(QUESTIONS, "typos", seed=0) != perturb(QUESTIONS, "typos", seed=1)


def test_typos_touch_only_long_words_and_keep_the_length_roughly() -> None:
    for seed in range(20):
        for question, typoed in zip(QUESTIONS, perturb(QUESTIONS, "typos", seed), strict=True):
            before, after = question.split(" "), typoed.split(" ")
            assert len(after) == len(before)
            changed = [(b, a) for b, a in zip(before, after, strict=True) if a != b]
            assert changed and all(sum(c.isalpha() for c in b) > 3 and a[0] == b[0] for b, a in changed)
            assert all(abs(len(a) - len(b)) <= 1 for b, a in changed)
    assert perturb(["Who is it?"], "typos") == ["Who is it?"]  # no word longer than 3 letters


def test_each_kind_of_typo_changes_the_word_by_at_most_one_character() -> None:
    results = {_typo("Jupiter", random.Random(seed)) for seed in range(200)}
    lengths = {len(r) for r in results}
    assert "Jupiter" not in results and lengths == {6, 7, 8}  # drop, swap/substitute, insert
    assert {"Jpuiter", "Jupietr"} & results  # a swap of adjacent letters
    assert {"Jupiyer", "Jupirer", "Juoiter"} & results  # an adjacent-key substitution


def test_casing_gives_lower_upper_or_title_and_always_changes_the_text() -> None:
    question = "Who wrote Pride and Prejudice?"
    variants = {casing(question, random.Random(seed)) for seed in range(30)}
    assert variants == {question.lower(), question.upper(), "Who Wrote Pride And Prejudice?"}
    assert "who is it?" not in {casing("who is it?", random.Random(seed)) for seed in range(30)}


def test_punctuation_changes_only_question_marks_commas_and_spaces() -> None:
    for seed in range(10):
        for question, edited in zip(QUESTIONS, perturb(QUESTIONS, "punctuation", seed), strict=True):
            assert re.sub(r"[\s,?]", "", edited) == re.sub(r"[\s,?]", "", question)
            assert edited != question


def test_paraphrase_wraps_the_question_or_rewords_a_safe_opening() -> None:
    question = "What is the capital city of Australia?"
    assert paraphrase(question, FixedRandom(0.0)) == "What's the capital city of Australia?"
    assert (
        paraphrase("How many moons does Jupiter have?", FixedRandom(0.0)) == "What number of moons does Jupiter have?"
    )
    assert paraphrase("Which country won?", FixedRandom(0.0)) == "What country won?"
    wrapped = paraphrase("Which of the two is older?", FixedRandom(0.0))  # "What of" would not be safe
    assert wrapped in {t.format(q="Which of the two is older?") for t in TEMPLATES}
    assert paraphrase(question, FixedRandom(0.9)) in {t.format(q=question) for t in TEMPLATES}


@pytest.mark.parametrize(
    ("question", "negated", "form"),
    [
        ("Who is the president of France?", "Who isn't the president of France?", "contraction"),
        ("Is Paris the capital of France?", "Isn't Paris the capital of France?", "contraction"),
        ("When did Chopin die?", "When didn't Chopin die?", "contraction"),
        ("The war was fought between which countries?", "The war was not fought between which countries?", "not"),
        ("Who wrote Hamlet?", "Who never wrote Hamlet?", "never"),
        ("Which country is the largest?", "Which country is not the largest?", "not"),
        ("Which country hosted the 2000 Olympics?", "Which country never hosted the 2000 Olympics?", "never"),
        ("Capital of France?", NEGATION_WRAPPER.format(q="Capital of France?"), "wrapper"),
    ],
)
def test_negation_on_hand_cases(question: str, negated: str, form: str) -> None:
    assert negation(question, random.Random(0)) == negated
    assert negation_form(question)[0] == form


# A classifier whose decision depends only on features the test controls: the fake encoder's columns are
# (has an upper-case letter, has a negation word, 1). Upper case -> ft, lower case -> rag, negated -> both.
NEGATION_WORD = re.compile(r"\b(not|never|\w+n't)\b|answer to this", re.IGNORECASE)


def fake_encode(texts: list[str]) -> np.ndarray:
    return np.array([[float(t != t.lower()), float(bool(NEGATION_WORD.search(t))), 1.0] for t in texts])


FAKE = RouteClassifier(
    weights=np.array([[4.0, -8.0, -2.0], [-4.0, -8.0, 2.0], [0.0, 8.0, -2.0]]),
    biases=np.zeros(3),
    calibrators=tuple(Calibrator("sigmoid", np.array([1.0, 0.0]), np.zeros(0)) for _ in range(3)),
)


def hand_outcomes(questions: list[str]) -> Outcomes:
    """Even rows: only ``ft`` is right (the original decision is correct, and the cheapest correct); odd rows: only
    ``rag`` is right (the original decision, ``ft``, is wrong)."""
    em = np.array([[1.0, 0.0, 0.0] if i % 2 == 0 else [0.0, 1.0, 0.0] for i in range(len(questions))])
    cost = np.tile([0.0, 1.0, 3.0], (len(questions), 1))
    return Outcomes(questions, em, em.copy(), cost, ["hand"] * len(questions), "", [{} for _ in questions])


def test_stability_figures_on_a_classifier_whose_decision_the_test_controls() -> None:
    outcomes = hand_outcomes(QUESTIONS)
    decide = partial(route, FAKE, Policy())
    x = fake_encode(QUESTIONS)
    probabilities, choices = decide(x, QUESTIONS)
    assert choices.tolist() == [0] * len(QUESTIONS)  # every original question has a capital: ft
    report = measure(outcomes, x, Decisions(probabilities, choices), decide, Probe(fake_encode, seed=5))
    families = report["families"]
    for name in ("typos", "punctuation", "paraphrase"):  # keep the capital, add no negation: decision kept
        assert families[name]["decision_unchanged"] == 1.0 and families[name]["em"]["em_difference"] == 0.0
    lowered = np.array([t == t.lower() for t in perturb(QUESTIONS, "casing", seed=5)])
    assert 0 < lowered.sum() < len(QUESTIONS)  # the seed makes some questions lower case, not all
    case = families["casing"]
    assert case["decision_unchanged"] == pytest.approx(1 - lowered.mean(), abs=1e-4)
    even = np.arange(len(QUESTIONS)) % 2 == 0
    assert case["unchanged_when_correct"] == pytest.approx(1 - lowered[even].mean(), abs=1e-4)
    assert case["unchanged_when_wrong"] == pytest.approx(1 - lowered[~even].mean(), abs=1e-4)
    assert case["em"]["flips_to_wrong"] == pytest.approx((lowered & even).mean(), abs=1e-4)
    assert case["em"]["flips_to_right"] == pytest.approx((lowered & ~even).mean(), abs=1e-4)
    em = 0.5 - (lowered & even).mean() + (lowered & ~even).mean()
    assert case["em"]["em_perturbed"] == pytest.approx(em, abs=1e-4)
    negated = families["negation"]
    assert negated["decision_unchanged"] == 0.0 and negated["em"] is None and negated["mix"]["both"] == 1.0
    sigmoid = 1 / (1 + np.exp(-np.array([-6.0, -10.0, 6.0])))  # negated (capital kept): ft, rag, both
    expected = np.abs(sigmoid - 1 / (1 + np.exp(-np.array([2.0, -2.0, -2.0]))))
    assert list(negated["mean_abs_delta_p"].values()) == pytest.approx(expected.round(4).tolist(), abs=1e-4)
    assert report["negation_vs_surface"]["decision_changed"] == 1.0
    assert report["negation_vs_surface"]["delta_p_ratio"] > 3


def test_a_sample_perturbs_a_seeded_subset() -> None:
    questions = QUESTIONS * 5
    outcomes = hand_outcomes(questions)
    decide = partial(route, FAKE, Policy())
    x = fake_encode(questions)
    original = Decisions(*decide(x, questions))
    report = measure(outcomes, x, original, decide, Probe(fake_encode, sample=7, families=("negation",)))
    assert report["rows"] == 7 and report["families"]["negation"]["rows"] == 7
    assert "negation_vs_surface" not in report and set(report["families"]) == {"negation"}


@pytest.fixture
def eval_report(outcomes_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[dict, str]:
    get_settings.cache_clear()
    args = ["eval", "--outcomes", str(outcomes_path), "--model", str(default_bundle_dir()), "--skip-lodo"]
    assert main([*args, "--resamples", "50", "--json", "--out", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    return report, (tmp_path / "report.md").read_text()


def test_router_eval_reports_robustness_in_json_and_markdown(eval_report: tuple[dict, str]) -> None:
    report, markdown = eval_report
    section = report["robustness"]
    assert section["rows"] == report["rows"] == 120 and list(section["families"]) == list(FAMILIES)
    for name, figures in section["families"].items():
        assert figures["rows"] == 120 and figures["text_changed"] == 1.0
        assert sum(figures["mix"].values()) == pytest.approx(1.0, abs=1e-3)
        if name in MEANING_PRESERVING:  # same questions, same outcomes, same decisions before perturbing
            assert figures["em"]["em_original"] == report["routed"]["em"]
            assert figures["em"]["mean_cost_original"] == pytest.approx(report["routed"]["mean_cost"], abs=1e-3)
            low, high = figures["em"]["em_difference_ci"]
            assert low <= figures["em"]["em_perturbed"] - figures["em"]["em_original"] <= high
        row = f"| {name} | 120 | {figures['decision_unchanged']:.1%} |"
        assert row in markdown and len(figures["examples"]) == 3
    assert figures["em"] is None and "| negation | 120 |" in markdown and "not valid (meaning changed)" in markdown
    surface = np.mean([section["families"][n]["decision_unchanged"] for n in MEANING_PRESERVING])
    assert section["surface_decision_unchanged"] == pytest.approx(surface, abs=1e-4)
    assert "## Robustness to rewording" in markdown
    assert f"Negation changed {section['negation_vs_surface']['decision_changed']:.1%} of decisions" in markdown


def test_robustness_can_be_switched_off_or_sampled() -> None:
    parser = build_parser()
    assert parser.parse_args(["eval", "--outcomes", "x"]).robustness is True
    off = parser.parse_args(["eval", "--outcomes", "x", "--no-robustness", "--robustness-sample", "50"])
    assert off.robustness is False and off.robustness_sample == 50
