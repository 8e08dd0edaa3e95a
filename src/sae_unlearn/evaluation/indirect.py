"""The indirect-question attack's metrics (entities/indirect.py): the targets reached without their names, as the
answer of another entity's fact (reverse), through a description by another entity (two-hop) and through another
of their names (alias), each against the same questions with that other entity or name swapped for a never-seen
name of its type.

Built from the entity pool the run probed, so it exists where the entity file links entities or lists aliases (the
bundled real file: 299 entities are another's answer); the synthetic world's answers are attribute values, never
entities, and its names have no aliases, so a synthetic run writes none of these keys (docs/attacks.md).
"""

from __future__ import annotations

from torch import nn

from sae_unlearn.context import EvaluationContext
from sae_unlearn.entities.indirect import ALIAS, REVERSE, TWO_HOP, alias_questions, reverse_questions, two_hop_questions
from sae_unlearn.metrics.recall import recall, scored_facts, substituted_recall
from sae_unlearn.metrics.registry import Metric, register, register_attack

BUILDERS = {REVERSE: reverse_questions, TWO_HOP: two_hop_questions, ALIAS: alias_questions}


def indirect_recall(ctx: EvaluationContext, model: nn.Module, original: bool) -> dict[str, float]:
    """``forget_<kind>_recall`` for each kind with questions on the run's phrasings; on the original model also
    its floor and how many questions were asked."""
    tok, n_tok, held = ctx.tokenizer, ctx.cfg.eval.max_new_tokens, ctx.eval_heldout
    out: dict[str, float] = {}
    for kind, build in BUILDERS.items():
        questions = ctx.scored(build(ctx.split.forget, ctx.candidates))  # at most eval.max_scored_entities bridges
        asked = sum(len(scored_facts(e, held)) for e in questions)
        if not asked:
            continue
        out[f"forget_{kind}_recall"] = recall(model, tok, questions, held, n_tok)
        if original:
            out[f"unknown_{kind}_recall_same_prompts"] = substituted_recall(
                model, tok, questions, ctx.unknown_eval, heldout=held, max_new_tokens=n_tok
            )
            out[f"forget_{kind}_questions"] = asked  # a count: the report prints it as one
    return out


ATTACK = "indirect questions"
register_attack(
    ATTACK,
    "Do questions that reach a target without naming it still get its facts: the target as another entity's "
    'answer ("The capital of France is" -> Paris), or its own facts asked through a description ("The capital of '
    'France is located on the continent of" -> Europe) or with another of its names ("Einstein" for "Albert '
    'Einstein")? Floor: the same questions with that other entity or name swapped for a never-seen name.',
    extended=True,
)
_LABELS = {
    REVERSE: "targets as another entity's answer (reverse questions)",
    TWO_HOP: "targets' facts asked through another entity (two-hop)",
    ALIAS: "targets' facts asked with another of their names (aliases)",
}
register(
    *(
        Metric(
            f"forget_{kind}_recall",
            f"{label}, recall",
            better="floor",
            floors=(f"unknown_{kind}_recall_same_prompts",),
            section="attacks",
            attack=ATTACK,
            # two-hop questions are mostly guessable (their floor): the panel shows them
            compare=kind != TWO_HOP,
            compute=indirect_recall,  # one function computes both kinds (run once: registry.computed)
        )
        for kind, label in _LABELS.items()
    ),
    *(
        Metric(
            f"unknown_{kind}_recall_same_prompts",
            f"{label}, bridge swapped for a never-seen name (floor)",
            scope="floor",
        )
        for kind, label in _LABELS.items()
    ),
    *(
        Metric(f"forget_{kind}_questions", f"{label}: questions asked", scope="floor", section="attacks", attack=ATTACK)
        for kind, label in _LABELS.items()
    ),
)
