"""The human-readable evaluation report: ``report.md`` plus two PNG plots, written by ``router eval --out DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.routes import ROUTES

CURVE_PNG, RELIABILITY_PNG, REPORT_MD = "em_vs_cost.png", "reliability.png", "report.md"
ROBUSTNESS_HEADER = [
    "family",
    "n",
    "decision unchanged",
    "unchanged when correct / cheapest correct / wrong",
    "mean abs dp ft / rag / both",
    "embedding cosine",
    "EM original -> perturbed (diff, 95% CI)",
    "mean calls original -> perturbed",
]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def plot_curve(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    points = report["curve"]["points"]
    ax.plot(
        [p["mean_cost"] for p in points], [p["em"] for p in points], "-", color="#1f77b4", label="router (cost knob)"
    )
    knn = report["baselines"]["knn"]["curve"]["points"]
    ax.plot([p["mean_cost"] for p in knn], [p["em"] for p in knn], "--", color="#7f7f7f", label="kNN on embeddings")
    prior = report["baselines"].get("dataset_prior")
    if prior:
        steps = prior["curve"]["points"]
        ax.plot(
            [p["mean_cost"] for p in steps],
            [p["em"] for p in steps],
            ":",
            color="#17becf",
            label="dataset prior (knows the dataset)",
        )
    named = {f"always {r}": report["baselines"][f"always_{r}"] for r in ROUTES}
    named |= {"Adaptive-RAG": report["baselines"].get("adaptive_rag"), "oracle": report["baselines"]["oracle"]}
    named |= {"random at router's mix": report["baselines"]["random_matched_mix"]}
    for label, values in named.items():
        if values:
            below = label.startswith("random")  # it sits next to the router's own point
            ax.scatter(values["mean_cost"], values["em"], s=40, zorder=3)
            ax.annotate(
                label, (values["mean_cost"], values["em"]), textcoords="offset points", xytext=(5, -12 if below else 4)
            )
    routed = report["routed"]
    ax.scatter(routed["mean_cost"], routed["em"], marker="*", s=180, color="#d62728", zorder=4)
    ax.annotate("router, configured", (routed["mean_cost"], routed["em"]), textcoords="offset points", xytext=(6, 6))
    ax.set_xlabel("mean retrieval calls per question")
    ax.set_ylabel("exact match")
    ax.set_title(f"EM vs retrieval cost ({report['rows']} questions)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_reliability(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(ROUTES), figsize=(12, 4), sharey=True)
    for ax, route in zip(axes, ROUTES, strict=True):
        table = report["calibration"][route]["reliability"]
        ax.plot([0, 1], [0, 1], ":", color="#7f7f7f")
        ax.plot([b["mean_predicted"] for b in table], [b["observed"] for b in table], "o-", color="#1f77b4")
        for b in table:
            ax.annotate(
                str(b["count"]),
                (b["mean_predicted"], b["observed"]),
                fontsize=7,
                xytext=(3, -9),
                textcoords="offset points",
            )
        metrics = report["calibration"][route]
        ax.set_title(f"{route}: ECE {metrics['ece']:.3f}, Brier {metrics['brier']:.3f}")
        ax.set_xlabel("predicted success probability")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("observed success rate")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def _policies(report: dict[str, Any]) -> list[list[str]]:
    base, ci, routed = report["baselines"], report["ci"], report["routed"]
    rows = [
        [
            "**router, configured policy**",
            f"**{routed['em']:.3f}** [{ci['routed_em'][0]:.3f}, {ci['routed_em'][1]:.3f}]",
            f"{routed['mean_cost']:.2f}",
            _mix(routed["mix"]),
        ]
    ]
    rows.append(
        [
            "router at mean cost <= 1.0",
            f"{_pct(report['curve']['em_at_cost']['1.0'])} "
            f"[{ci['em_at_cost_1.0'][0]:.3f}, {ci['em_at_cost_1.0'][1]:.3f}]",
            "<= 1.00",
            "",
        ]
    )
    for name in ("always_ft", "always_rag", "always_both", "random_matched_mix", "adaptive_rag", "oracle"):
        if base.get(name):
            value = base[name]
            rows.append(
                [name.replace("_", " "), f"{value['em']:.3f}", f"{value['mean_cost']:.2f}", _mix(value.get("mix", {}))]
            )
    knn = base["knn"]["curve"]["em_at_cost"]
    rows.append([f"kNN (k={base['knn']['k']}) at mean cost <= 1.0", _pct(knn["1.0"]), "<= 1.00", ""])
    if base.get("dataset_prior"):
        prior = base["dataset_prior"]["curve"]["em_at_cost"]
        rows.append(["dataset prior at mean cost <= 1.0 (knows the dataset)", _pct(prior["1.0"]), "<= 1.00", ""])
    return rows


def _knob_table(report: dict[str, Any]) -> list[str]:
    curve, base = report["curve"], report["baselines"]
    references = {"kNN": base["knn"]} | ({"dataset prior": base["dataset_prior"]} if base.get("dataset_prior") else {})
    lines = _table(
        ["mean cost <=", "router EM", *(f"{name} EM" for name in references)],
        [
            [b, _pct(curve["em_at_cost"][b]), *(_pct(r["curve"]["em_at_cost"][b]) for r in references.values())]
            for b in curve["em_at_cost"]
        ],
    )
    areas = ", ".join(f"{name} {r['curve']['normalised_area']:.3f}" for name, r in references.items())
    lines += [
        "",
        f"Normalised area under the curve (0 = always `ft`, 1 = oracle, over 0..{curve['max_cost']:.2f} calls): "
        f"router {curve['normalised_area']:.3f}, {areas}.",
    ]
    if "dataset prior" in references:
        lines += [
            "",
            "The dataset prior is not a router: it knows which dataset each question comes from, which a live query "
            "does not carry, and takes each dataset's route EM rates on the training rows. Where the router comes "
            "close to it, its gain is mostly recognising the dataset; to beat it, a router needs signal within a "
            "dataset.",
        ]
    return lines


def _mix(mix: dict[str, float]) -> str:
    return " / ".join(f"{route} {mix[route]:.0%}" for route in ROUTES if route in mix)


def render_markdown(report: dict[str, Any]) -> str:
    ci = report["ci"]
    lines = [
        f"# Router evaluation: bundle {report['model_version']}",
        "",
        f"{report['rows']} questions. Policy: thresholds {report['thresholds']}, cost_weight "
        f"{report['cost_weight']:.4g}. Brackets are {ci['method']} intervals.",
        "",
        "## Policies on the same questions",
        "",
        *_table(["policy", "EM", "mean retrieval calls", "mix"], _policies(report)),
        "",
        f"![EM vs cost]({CURVE_PNG})",
        "",
        "## Cost knob",
        "",
        "The policy swept over its cost knob (`cost_weight`, thresholds kept): the best EM at or under each mean cost.",
        "",
        *_knob_table(report),
        "",
    ]
    lines += _paired(ci)
    lines += ["## Calibration", "", f"![reliability]({RELIABILITY_PNG})", ""]
    lines += _table(
        ["route", "AUROC", "Brier", "ECE", "mean predicted", "observed"],
        [
            [
                r,
                f"{m['auroc']:.3f}",
                f"{m['brier']:.3f}",
                f"{m['ece']:.3f}",
                f"{m['mean_predicted']:.3f}",
                f"{m['base_rate']:.3f}",
            ]
            for r, m in report["calibration"].items()
        ],
    )
    lines += ["", "## Per dataset", ""]
    lines += _table(
        ["dataset", "router EM", "calls", "ft", "rag", "both", "Adaptive-RAG EM (calls)", "oracle"],
        [
            [
                name,
                f"{d['routed']['em']:.3f}",
                f"{d['routed']['mean_cost']:.2f}",
                f"{d['always_ft']:.3f}",
                f"{d['always_rag']:.3f}",
                f"{d['always_both']:.3f}",
                f"{d['adaptive_rag']['em']:.3f} ({d['adaptive_rag']['mean_cost']:.2f})" if d["adaptive_rag"] else "-",
                f"{d['oracle_em']:.3f}",
            ]
            for name, d in report["per_dataset"].items()
        ],
    )
    if "lodo" in report:
        lines += [
            "",
            "## Leave one dataset out",
            "",
            "Retrained without the dataset's training rows; same thresholds.",
            "",
        ]
        lines += _table(
            ["held-out dataset", "EM held out (calls)", "EM in domain (calls)", "always ft", "best fixed"],
            [
                [
                    name,
                    f"{d['held_out']['em']:.3f} ({d['held_out']['mean_cost']:.2f})",
                    f"{d['in_domain']['em']:.3f} ({d['in_domain']['mean_cost']:.2f})",
                    f"{d['always_ft_em']:.3f}",
                    f"{d['best_fixed_em']:.3f}",
                ]
                for name, d in report["lodo"].items()
            ],
        )
    lines += _robustness(report.get("robustness"))
    return "\n".join(lines) + "\n"


def _robustness(section: dict[str, Any] | None) -> list[str]:
    if not section:
        return []
    lines = [
        "",
        "## Robustness to rewording",
        "",
        f"{section['rows']} questions, each rewritten by every family (seed {section['seed']}; examples below) and "
        "decided again by the same classifier and policy. The meaning-preserving families should leave the decision "
        "unchanged (ideal 100%), and their EM is scored on the original question's outcomes. A negated question has "
        "no outcomes, so its right route is unknown: its row says how often the decision changed, not whether the "
        "change was right. The unchanged shares are split by the original decision: correct, the cheapest correct "
        "route, wrong. Embedding cosine is the mean cosine of the original and perturbed embeddings; what moves "
        "the scores beyond it is the question-shape features.",
        "",
    ]
    lines += _table(ROBUSTNESS_HEADER, [_robustness_row(name, f) for name, f in section["families"].items()])
    versus = section.get("negation_vs_surface")
    if versus:
        lines += [
            "",
            f"Negation changed {versus['decision_changed']:.1%} of decisions, the meaning-preserving families "
            f"{versus['surface_decision_changed']:.1%}; negation moved the scores {versus['delta_p_ratio']}x as far "
            "(mean absolute change of the success probabilities). At 1x negation would move the scores as much as "
            "surface noise; a router that read the meaning should sit well above 1x.",
        ]
    lines += ["", "Examples (route before -> after):", ""]
    for name, figures in section["families"].items():
        lines += [
            f"- {name}: `{_quote(e['original'])}` -> `{_quote(e['perturbed'])}` "
            f"({e['route']} -> {e['perturbed_route']})"
            for e in figures["examples"]
        ]
    return lines


def _robustness_row(name: str, figures: dict[str, Any]) -> list[str]:
    split = " / ".join(
        _share(figures[key])
        for key in ("unchanged_when_correct", "unchanged_when_cheapest_correct", "unchanged_when_wrong")
    )
    em = figures["em"]
    effect, calls = "not valid (meaning changed)", "-"
    if em:
        calls = f"{em['mean_cost_original']:.2f} -> {em['mean_cost_perturbed']:.2f}"
        low, high = em["em_difference_ci"]
        effect = (
            f"{em['em_original']:.3f} -> {em['em_perturbed']:.3f} "
            f"({em['em_difference']:+.3f}, [{low:+.3f}, {high:+.3f}])"
        )
    delta = " / ".join(f"{figures['mean_abs_delta_p'][r]:.3f}" for r in ROUTES)
    unchanged = _share(figures["decision_unchanged"])
    return [name, str(figures["rows"]), unchanged, split, delta, f"{figures['embedding_cosine']:.3f}", effect, calls]


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _quote(text: str) -> str:
    return text.replace("`", "'").replace("|", "/")


def _paired(ci: dict[str, Any]) -> list[str]:
    paired = ci.get("paired_vs_adaptive_rag")
    if not paired:
        return []
    lines = ["## Paired comparison with Adaptive-RAG", ""]
    for name, diff in paired.items():
        lines.append(
            f"- `{name}`: {diff['mean']:+.3f}, 95% CI [{diff['ci'][0]:+.3f}, {diff['ci'][1]:+.3f}]; "
            f"not better in {diff['share_of_resamples_not_better']:.1%} of resamples."
        )
    return [*lines, ""]


def write_report(report: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    plot_curve(report, directory / CURVE_PNG)
    plot_reliability(report, directory / RELIABILITY_PNG)
    path = directory / REPORT_MD
    path.write_text(render_markdown(report), encoding="utf-8")
    return path
