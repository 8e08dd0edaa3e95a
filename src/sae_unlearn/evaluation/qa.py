"""Standard QA evaluation (`sae-unlearn evaluate --qa FILE.jsonl`): free-form greedy answers scored as the
entity-unlearning benchmarks score them, so a user's RWKU or TOFU files (or their own QA pairs) can be read
against ours.

Each line: ``{"question": ..., "answer": ..., "entity": optional, "paraphrased_question": optional}``. An answer
(the greedy generation's first line, as RWKU stops at a newline) is scored by ROUGE-L recall of the reference
answer (RWKU's and TOFU's convention; ``rouge-score`` with stemming, as TOFU computes it) and by exact
containment (the reference, case-folded, inside the answer). Mapping from the benchmarks' files: docs/attacks.md.
"""

from __future__ import annotations

import dataclasses
import logging
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from sae_unlearn.context import EvaluationContext
from sae_unlearn.errors import UserInputError
from sae_unlearn.io_utils import read_json_lines
from sae_unlearn.methods.adapters import merged_adapter
from sae_unlearn.methods.base import UnlearnOutcome
from sae_unlearn.metrics.registry import Better, Metric, register, register_attack
from sae_unlearn.models.generation import greedy_continuations

log = logging.getLogger(__name__)

QA_TEMPLATE = "Q: {question} A:"  # the question form of our held-out phrasings (entities/phrasings.py)
QA_MAX_NEW_TOKENS = 32  # free-form answers run longer than the few tokens recall needs
_EXAMPLE = '{"question": "What is the capital of Kenya?", "answer": "Nairobi", "entity": "Kenya"}'


@dataclass(frozen=True)
class QAItem:
    question: str
    answer: str
    entity: str | None = None
    paraphrased_question: str | None = None


def check_template(template: str) -> str:
    if "{question}" not in template:
        raise UserInputError(
            f"QA template {template!r} has no {{question}} slot; e.g. 'Question: {{question}}\\nAnswer:', or "
            "'{question}' for cloze sentences."
        )
    return template


def load_qa_file(path: Path) -> list[QAItem]:
    """The file's items; a bad line is refused with its number and the expected form."""
    items = []
    for _, where, obj in read_json_lines(path, "QA file"):
        if not isinstance(obj, dict):
            raise UserInputError(f"{where}: expected a JSON object like {_EXAMPLE}")
        missing = [k for k in ("question", "answer") if not isinstance(obj.get(k), str) or not obj[k].strip()]
        if missing:
            raise UserInputError(
                f"{where}: {missing} missing or not a non-empty string; each line looks like {_EXAMPLE}"
            )
        optional = {k: obj.get(k) for k in ("entity", "paraphrased_question")}
        wrong = [k for k, v in optional.items() if v is not None and not isinstance(v, str)]
        if wrong:
            raise UserInputError(f"{where}: {wrong} must be strings when given")
        items.append(QAItem(obj["question"].strip(), obj["answer"].strip(), **optional))
    if not items:
        raise UserInputError(f"QA file {path} has no items; each line looks like {_EXAMPLE}")
    return items


def _scores(references: list[str], generations: list[str]) -> tuple[list[float], list[float]]:
    from rouge_score import rouge_scorer  # here: it imports nltk, which the rest of a run never needs

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rouge = [scorer.score(ref, gen)["rougeL"].recall for ref, gen in zip(references, generations)]
    contains = [float(ref.casefold() in gen.casefold()) for ref, gen in zip(references, generations)]
    return rouge, contains


def qa_scores(
    model: nn.Module,
    tokenizer,
    items: list[QAItem],
    forget_names: set[str],
    template: str = QA_TEMPLATE,
    max_new_tokens: int = QA_MAX_NEW_TOKENS,
) -> tuple[dict[str, float], list[dict]]:
    """Mean scores (all items; the unlearning targets' and the others' when items name their entity; the
    paraphrased questions where given) and each item's answers."""
    asked = [(i, "question", it.question) for i, it in enumerate(items)]
    asked += [(i, "paraphrased", it.paraphrased_question) for i, it in enumerate(items) if it.paraphrased_question]
    generations = greedy_continuations(
        model, tokenizer, [template.replace("{question}", q) for _, _, q in asked], max_new_tokens
    )
    # the answer is the generation's first line, as RWKU stops generating at a newline
    generations = [g.strip().split("\n", 1)[0] for g in generations]
    rouge, contains = _scores([items[i].answer for i, _, _ in asked], generations)
    rows: list[dict] = [{} for _ in items]
    groups: dict[str, list[int]] = {}
    for k, ((i, form, _), gen) in enumerate(zip(asked, generations)):
        rows[i] |= {f"{form}_generation": gen, f"{form}_rougeL_recall": rouge[k], f"{form}_contains": contains[k]}
        prefix = "qa" if form == "question" else "qa_paraphrased"
        groups.setdefault(prefix, []).append(k)
        if items[i].entity is not None:
            groups.setdefault(f"{prefix}_{'forget' if items[i].entity in forget_names else 'other'}", []).append(k)
    summary = {}
    for prefix, ks in groups.items():
        summary[f"{prefix}_rougeL_recall"] = float(np.mean([rouge[k] for k in ks]))
        summary[f"{prefix}_contains"] = float(np.mean([contains[k] for k in ks]))
    return summary, rows


def evaluate_qa(
    ctx: EvaluationContext,
    model: nn.Module,
    outcome: UnlearnOutcome | None,
    items: list[QAItem],
    template: str = QA_TEMPLATE,
) -> tuple[dict[str, float], list[dict]]:
    """``qa_*_before``/``_after`` (the original model, then ``model`` as the evaluation runs it: adapter folded
    in, a method's inference hook on) and, per item, both models' answers and scores."""
    forget = {e.name for e in ctx.split.forget}
    named = {it.entity for it in items if it.entity is not None}
    if named and not named & forget:
        log.warning(
            "no QA item names one of this run's targets (%s): every named item counts under qa_other_*; the "
            "entity field must spell a target as the run does",
            ", ".join(sorted(forget)),
        )
    before, rows_before = qa_scores(ctx.model, ctx.tokenizer, items, forget, template)
    with merged_adapter(model), outcome.context(model) if outcome else nullcontext():
        after, rows_after = qa_scores(model, ctx.tokenizer, items, forget, template)
    rows = [
        {k: v for k, v in dataclasses.asdict(item).items() if v is not None} | {"before": b, "after": a}
        for item, b, a in zip(items, rows_before, rows_after)
    ]
    return {f"{k}_before": v for k, v in before.items()} | {f"{k}_after": v for k, v in after.items()}, rows


_QA_GROUPS: tuple[tuple[str, str, Better], ...] = (
    ("qa", "QA file (`evaluate --qa`), every item", None),
    ("qa_forget", "QA file, items about the unlearning targets", "min"),
    ("qa_other", "QA file, items about other entities", "max"),
    ("qa_paraphrased", "QA file, paraphrased questions", None),
    ("qa_paraphrased_forget", "QA file, paraphrased questions about the targets", "min"),
    ("qa_paraphrased_other", "QA file, paraphrased questions about other entities", "max"),
)

QA_FILE = "QA file"
register_attack(QA_FILE, "On the user's own questions (`evaluate --qa`), how much of each answer is still given?")
register(
    *(
        Metric(
            f"{prefix}_{score}",
            f"{what}: {label}",
            better=better,
            section="attacks",
            attack=QA_FILE,
            summary=prefix == "qa_forget",
        )
        for prefix, what, better in _QA_GROUPS
        for score, label in (("rougeL_recall", "ROUGE-L recall of the answer"), ("contains", "answer contained"))
    )
)
