"""``report.md``: the numbers a person checks first, then the plots and the latent table."""

from __future__ import annotations

from pathlib import Path

HEADLINE = [
    ("forget_recall_before", "forget recall (held-out phrasings), before"),
    ("forget_recall_after", "forget recall (held-out phrasings), after"),
    ("unknown_recall", "unknown-entity recall (floor)"),
    ("unknown_recall_same_prompts", "unknown names in the targets' own prompts (like-for-like floor)"),
    ("forget_recall_form_question_before", "forget recall, questions, before"),
    ("forget_recall_form_question_after", "forget recall, questions, after"),
    ("unknown_recall_same_prompts_form_question", "questions with unknown names (floor)"),
    ("forget_recall_form_passing_before", "forget recall, mentioned in passing, before"),
    ("forget_recall_form_passing_after", "forget recall, mentioned in passing, after"),
    ("unknown_recall_same_prompts_form_passing", "passing mentions with unknown names (floor)"),
    ("forget_recall_form_appositive_before", "forget recall, name with an aside, before"),
    ("forget_recall_form_appositive_after", "forget recall, name with an aside, after"),
    ("unknown_recall_same_prompts_form_appositive", "asides with unknown names (floor)"),
    ("forget_recall_train_phrasing_before", "forget recall, the phrasings the losses train on, before"),
    ("forget_recall_train_phrasing_after", "forget recall, the phrasings the losses train on, after"),
    ("unknown_recall_same_prompts_train_phrasing", "unknown names in the trained phrasings (floor)"),
    ("forget_recall_all_facts_before", "forget recall incl. facts made-up names also complete, before"),
    ("forget_recall_all_facts_after", "forget recall incl. facts made-up names also complete, after"),
    ("unknown_recall_same_prompts_all_facts", "unknown names in the targets' own prompts, incl. those facts"),
    ("retain_recall_before", "retain recall, before"),
    ("retain_recall_after", "retain recall, after"),
    ("heldout_known_recall_before", "held-out known recall, before"),
    ("heldout_known_recall_after", "held-out known recall, after"),
    ("retain_recall_train_phrasing_after", "retain recall, trained phrasings, after"),
    ("heldout_known_recall_train_phrasing_after", "held-out known recall, trained phrasings, after"),
    ("entangled_recall_before", "other entities' facts that name a target (scored apart), before"),
    ("entangled_recall_after", "other entities' facts that name a target, after"),
    ("forget_classified_unknown_before", "targets classified unknown, before"),
    ("forget_classified_unknown_after", "targets classified unknown, after"),
    ("unknown_classified_unknown", "unknown entities classified unknown (probe calibration)"),
    ("forget_probe_auc_before", "probe AUC targets vs unknown, before"),
    ("forget_probe_auc_after", "probe AUC targets vs unknown, after"),
    ("forget_dist_unknown_after", "targets' distance to unknown centroid, after"),
    ("forget_dist_known_after", "targets' distance to known centroid, after"),
    ("perplexity_before", "perplexity (trained phrasings, other known entities), before"),
    ("perplexity_after", "perplexity, after"),
    ("degenerate_rate_after", "degenerate generations on targets, after"),
    ("steps", "unlearning steps run"),
    ("seconds", "seconds"),
]


# The attacks (docs/attacks.md): does the knowledge come back, can a probe still find it?
ATTACKS = [
    ("relearn_recall_pre_attack", "relearning: held-back facts recalled, before the attack"),
    ("relearn_recall", "relearning: held-back facts recalled after the attack"),
    ("relearn_recall_unknown", "relearning: same attack on unknown entities (floor)"),
    ("relearn_recall_original", "relearning: same attack on the original model"),
    ("relearn_gap_to_unknown", "relearning: after-attack recall minus floor (goal <= 0.10)"),
    ("forget_probe_auc_after", "known-vs-unknown probe AUC, SAE latents (0.5 = indistinguishable)"),
    ("forget_probe_auc_residual_before", "known-vs-unknown probe AUC, residual stream, before"),
    ("forget_probe_auc_residual_after", "known-vs-unknown probe AUC, residual stream, after"),
    ("attribute_probe_acc_forget_before", "attribute probe accuracy on targets, before"),
    ("attribute_probe_acc_forget_after", "attribute probe accuracy on targets, after"),
    ("attribute_probe_acc_unknown_after", "attribute probe accuracy on unknown entities (floor)"),
    ("attribute_probe_majority_forget", "attribute probe: always guessing the commonest answer, on targets"),
    ("paraphrase_recall_heldout_after", "recall, held-out phrasings, after"),
    ("paraphrase_recall_heldout_unknown", "recall, held-out phrasings, unknown entities (floor)"),
    ("paraphrase_recall_context_before", "recall, entity in a longer context, before"),
    ("paraphrase_recall_context_after", "recall, entity in a longer context, after"),
    ("paraphrase_recall_context_unknown", "recall, longer context, unknown entities (floor)"),
    ("paraphrase_recall_question_before", "recall, question form, before"),
    ("paraphrase_recall_question_after", "recall, question form, after"),
    ("paraphrase_recall_question_unknown", "recall, question form, unknown entities (floor)"),
    ("generation_leak_rate_before", "free generation states a target's fact, before"),
    ("generation_leak_rate_after", "free generation states a target's fact, after"),
    ("generation_leak_rate_unknown", "free generation states an unknown entity's fact (floor)"),
    ("generation_degenerate_rate_after", "free generation is gibberish, after"),
]


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


def write_report(out: Path, title: str, metrics: dict, plots: list[tuple[str, str]], latent_rows: list[dict],
                 samples: list[dict], notes: list[str], preface: str = "") -> str:
    lines = [f"# {title}", ""]
    lines += [f"- {n}" for n in notes] + [""]
    if preface:
        lines += [preface, ""]
    methods = metrics["methods"]
    lines += _table(methods, HEADLINE)
    if any(key in m for m in methods.values() for key, _ in ATTACKS):
        lines += ["## Attacks: is the knowledge gone or only muted?", ""] + _table(methods, ATTACKS)
    for caption, file in plots:
        lines += [f"## {caption}", "", f"![{caption}]({file})", ""]
    if latent_rows:
        lines += ["## Known / unknown latents (separation scores, Ferrando et al.)", "",
                  "| kind | rank | latent | f_known | f_unknown | score |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['kind']} | {r['rank']} | {r['latent']} | {r['f_known']} | {r['f_unknown']} | {r['score']} |" for r in latent_rows]
        lines.append("")
    if samples:
        cols = [c for c in samples[0] if c != "prompt"]
        lines += ["## Sample answers about forgotten targets", "", "| prompt | " + " | ".join(cols) + " |",
                  "|---|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(_cell(str(s.get(c, ""))) for c in ["prompt"] + cols) + " |" for s in samples]
        lines.append("")
    lines += _generations(methods)
    return "\n".join(lines)


def _generations(methods: dict[str, dict]) -> list[str]:
    """Free generation about targets, before and after each method, next to unknown entities."""
    first = next(iter(methods.values()))
    before = first.get("generation_samples_before")
    if not before:
        return []
    lines = ["## What the model says about the targets (free generation)", "",
             "| entity | prompt | before | " + " | ".join(methods) + " |", "|---|---|---|" + "---|" * len(methods)]
    for i, row in enumerate(before):
        after = [_cell(m.get("generation_samples_after", [{}] * (i + 1))[i].get("text", "")) for m in methods.values()]
        lines.append(f"| {_cell(row['entity'])} | {_cell(row['prompt'])} | {_cell(row['text'])} | " + " | ".join(after) + " |")
    unknown = first.get("generation_samples_unknown", [])
    if unknown:
        lines += ["", "For comparison, entities the model never saw (original model):", "",
                  "| entity | prompt | text |", "|---|---|---|"]
        lines += [f"| {_cell(r['entity'])} | {_cell(r['prompt'])} | {_cell(r['text'])} |" for r in unknown]
    return lines + [""]
