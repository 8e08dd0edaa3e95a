"""``report.md``: the numbers a person checks first, then the plots and the latent table."""

from __future__ import annotations

from pathlib import Path

HEADLINE = [
    ("forget_recall_before", "forget recall, before"),
    ("forget_recall_after", "forget recall, after"),
    ("unknown_recall", "unknown-entity recall (floor)"),
    ("unknown_recall_same_prompts", "unknown names in the targets' own prompts (like-for-like floor)"),
    ("retain_recall_before", "retain recall, before"),
    ("retain_recall_after", "retain recall, after"),
    ("heldout_known_recall_before", "held-out known recall, before"),
    ("heldout_known_recall_after", "held-out known recall, after"),
    ("forget_classified_unknown_before", "targets classified unknown, before"),
    ("forget_classified_unknown_after", "targets classified unknown, after"),
    ("unknown_classified_unknown", "unknown entities classified unknown (probe calibration)"),
    ("forget_probe_auc_before", "probe AUC targets vs unknown, before"),
    ("forget_probe_auc_after", "probe AUC targets vs unknown, after"),
    ("forget_dist_unknown_after", "targets' distance to unknown centroid, after"),
    ("forget_dist_known_after", "targets' distance to known centroid, after"),
    ("perplexity_before", "perplexity (held-out text, other known), before"),
    ("perplexity_after", "perplexity, after"),
    ("degenerate_rate_after", "degenerate generations on targets, after"),
    ("steps", "unlearning steps run"),
    ("seconds", "seconds"),
]


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def write_report(out: Path, title: str, metrics: dict, plots: list[tuple[str, str]], latent_rows: list[dict], samples: list[dict], notes: list[str]) -> str:
    lines = [f"# {title}", ""]
    lines += [f"- {n}" for n in notes] + [""]
    methods = metrics["methods"]
    names = list(methods)
    lines += ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key, label in HEADLINE:
        if any(key in methods[n] for n in names):
            lines.append(f"| {label} | " + " | ".join(_fmt(methods[n].get(key, "")) for n in names) + " |")
    lines.append("")
    for caption, file in plots:
        lines += [f"## {caption}", "", f"![{caption}]({file})", ""]
    if latent_rows:
        lines += ["## Known / unknown latents (separation scores, Ferrando et al.)", "",
                  "| kind | rank | latent | f_known | f_unknown | score |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['kind']} | {r['rank']} | {r['latent']} | {r['f_known']} | {r['f_unknown']} | {r['score']} |" for r in latent_rows]
        lines.append("")
    if samples:
        lines += ["## Sample generations about forgotten targets", "", "| prompt | before | after |", "|---|---|---|"]
        lines += [f"| {s['prompt']} | {s['before']} | {s['after']} |" for s in samples]
        lines.append("")
    return "\n".join(lines)
