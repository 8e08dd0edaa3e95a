"""``report.md``: the numbers a person checks first, then the plots and the latent table."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import sae_unlearn.evaluation  # noqa: F401  (registers every metric the evaluation computes)
from sae_unlearn.entities.phrasings import PHRASING_LABELS
from sae_unlearn.metrics.registry import ATTACKS, Metric, section_rows


def _rows(methods: dict[str, dict], section: str) -> list[tuple[str, str]]:
    return section_rows(list(methods.values()), section, PHRASING_LABELS)


def _table(methods: dict[str, dict], rows: list[tuple[str, str]]) -> list[str]:
    names = list(methods)
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key, label in rows:
        if any(key in methods[n] for n in names):
            lines.append(f"| {label} | " + " | ".join(_fmt(methods[n].get(key, "")) for n in names) + " |")
    return lines + [""]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def write_report(
    out: Path,
    title: str,
    metrics: dict,
    plots: list[tuple[str, str]],
    latent_rows: list[dict],
    samples: list[dict],
    notes: list[str],
    preface: str = "",
    attack_plots: dict[str, str] | None = None,
) -> str:
    """The report's Markdown; ``attack_plots``: each attack's panel plot by attack name (``figures.attack_figures``)."""
    lines = [f"# {title}", ""]
    lines += [f"- {n}" for n in notes] + [""]
    if preface:
        lines += [preface, ""]
    methods = metrics["methods"]
    lines += _table(methods, _rows(methods, "headline"))
    lines += _attack_panels(methods, attack_plots or {})
    for caption, file in plots:
        lines += [f"## {caption}", "", f"![{caption}]({file})", ""]
    if latent_rows:
        lines += [
            "## Known / unknown latents (separation scores, Ferrando et al.)",
            "",
            "| kind | rank | latent | f_known | f_unknown | score |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['kind']} | {r['rank']} | {r['latent']} | {r['f_known']} | {r['f_unknown']} | {r['score']} |"
            for r in latent_rows
        ]
        lines.append("")
    if samples:
        cols = [c for c in samples[0] if c != "prompt"]
        lines += [
            "## Sample answers about forgotten targets",
            "",
            "| prompt | " + " | ".join(cols) + " |",
            "|---|" + "---|" * len(cols),
        ]
        lines += ["| " + " | ".join(_cell(str(s.get(c, ""))) for c in ["prompt"] + cols) + " |" for s in samples]
        lines.append("")
    lines += _generations(methods)
    return "\n".join(lines)


def _of_attack(attack: str, metric: Metric) -> bool:
    return metric.attack == attack


def _attack_panels(methods: dict[str, dict], plots: dict[str, str]) -> list[str]:
    """One panel per attack (``metrics.registry.ATTACKS``, in reading order): the question it asks, its rows (each
    with its floor), its plot."""
    if not _rows(methods, "attacks"):
        return []
    lines = ["## Attacks: is the knowledge gone or only muted?", ""]
    for attack, question in ATTACKS.items():
        rows = section_rows(list(methods.values()), "attacks", PHRASING_LABELS, only=partial(_of_attack, attack))
        if not rows:
            continue
        lines += [f"### {attack[:1].upper()}{attack[1:]}", "", f"*{question}*", ""] + _table(methods, rows)
        if attack in plots:
            lines += [f"![{attack}]({plots[attack]})", ""]
    return lines


def _generations(methods: dict[str, dict]) -> list[str]:
    """Free generation about targets, before and after each method, next to unknown entities."""
    first = next(iter(methods.values()))
    before = first.get("generation_samples_before")
    if not before:
        return []
    lines = [
        "## What the model says about the targets (free generation)",
        "",
        "| entity | prompt | before | " + " | ".join(methods) + " |",
        "|---|---|---|" + "---|" * len(methods),
    ]
    for i, row in enumerate(before):
        after = [_cell(m.get("generation_samples_after", [{}] * (i + 1))[i].get("text", "")) for m in methods.values()]
        lines.append(
            f"| {_cell(row['entity'])} | {_cell(row['prompt'])} | {_cell(row['text'])} | " + " | ".join(after) + " |"
        )
    unknown = first.get("generation_samples_unknown", [])
    if unknown:
        lines += [
            "",
            "For comparison, entities the model never saw (original model):",
            "",
            "| entity | prompt | text |",
            "|---|---|---|",
        ]
        lines += [f"| {_cell(r['entity'])} | {_cell(r['prompt'])} | {_cell(r['text'])} |" for r in unknown]
    return lines + [""]
