"""Every attack on one model, as ``metrics.json`` keys (names in docs/attacks.md).

Two halves: ``state_attacks`` reads one model state (cheap; the pipeline runs it before and after
unlearning, so its keys get ``_before``/``_after``), ``relearn_metrics`` fine-tunes a copy (costly;
once per method, with floors computed once per run by ``relearn_floors``).
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from typing import Callable

import torch
from torch import nn

from sae_unlearn.attacks.paraphrase import context_prompts, free_generation, heldout_facts, mentions, question_prompts
from sae_unlearn.attacks.probes import FactRows, attribute_probe_accuracy
from sae_unlearn.attacks.relearn import embeddings_edited, floor_entities, relearn_attack
from sae_unlearn.context import EvaluationContext
from sae_unlearn.entities.types import Entity, Fact
from sae_unlearn.metrics.recall import scored_facts, share_answered
from sae_unlearn.metrics.registry import Metric, register, register_attack

log = logging.getLogger("sae_unlearn")

# the attacks of this module, each a panel of the report (``register_attack``: the question it asks)
RELEARNING, PROBES, REPHRASINGS, FREE_GENERATION = "relearning", "probes", "rephrasings", "free generation"
register_attack(RELEARNING, "Do a few fine-tuning steps on some of a target's facts bring the others back?")
register_attack(
    REPHRASINGS, "Asked in words no loss saw (held-out phrasings, a longer context, a question), is the fact there?"
)
register_attack(PROBES, "Can a probe on the internals still tell the targets from unknown entities, or read a fact?")
register_attack(FREE_GENERATION, "Left to talk about a target, does the model state its facts, or babble?")

QUESTION_TOKENS = 16  # an instruction-tuned answer may restate the sentence before the answer
ATTACK_METRICS = (
    Metric(
        "relearn_recall",
        "relearning: held-back facts recalled after the attack",
        scope="method",
        better="min",
        floors=("relearn_recall_unknown",),
        section="attacks",
        attack=RELEARNING,
        compare=True,
        summary=True,
    ),
    Metric(
        "relearn_recall_pre_attack",
        "relearning: held-back facts recalled, before the attack",
        scope="method",
        section="attacks",
        attack=RELEARNING,
    ),
    Metric(
        "relearn_recall_unknown",
        "relearning: same attack on unknown entities (floor)",
        scope="method",
        section="attacks",
        attack=RELEARNING,
    ),
    Metric(
        "relearn_recall_original",
        "relearning: same attack on the original model",
        scope="method",
        section="attacks",
        attack=RELEARNING,
    ),
    Metric(
        "relearn_gap_to_unknown",
        "relearning: after-attack recall minus floor (goal <= 0.10)",
        scope="method",
        better="min",
        section="attacks",
        attack=RELEARNING,
    ),
    Metric(
        "relearn_recall_best",
        "relearning: held-back facts recalled at the attack's best evaluated step",
        scope="method",
        better="min",
        floors=("relearn_recall_unknown_best",),
        section="attacks",
        attack=RELEARNING,
    ),
    Metric(
        "relearn_recall_unknown_best",
        "relearning: same on unknown entities (floor)",
        scope="method",
        section="attacks",
        attack=RELEARNING,
    ),
    Metric(
        "relearn_recall_original_best",
        "relearning: same on the original model",
        scope="method",
        section="attacks",
        attack=RELEARNING,
    ),
    Metric("relearn_recovery", "relearning: recall gained by the attack", scope="method", section="hidden"),
    *(
        Metric(key, key, scope="method", section="hidden")
        for key in (
            "relearn_curve",
            "relearn_curve_original",
            "relearn_curve_unknown",
            "relearn_entities",
            "relearn_steps",
            "relearn_lr",
        )
    ),
    Metric(
        "forget_probe_auc_residual",
        "known-vs-unknown probe AUC, residual stream (0.5 = indistinguishable)",
        better=0.5,
        section="attacks",
        attack=PROBES,
        compare=True,
        summary=True,
    ),
    Metric(
        "attribute_probe_acc_forget",
        "attribute probe accuracy on targets",
        better="min",
        floors=("attribute_probe_majority_forget",),
        section="attacks",
        attack=PROBES,
        compare=True,
    ),
    Metric(
        "attribute_probe_acc_unknown",
        "attribute probe accuracy on unknown entities (floor)",
        rows=("after",),
        section="attacks",
        attack=PROBES,
    ),
    Metric(
        "attribute_probe_majority_forget",
        "attribute probe: always guessing the commonest answer, on targets",
        scope="floor",
        section="attacks",
        attack=PROBES,
    ),
    Metric(
        "paraphrase_recall_heldout",
        "recall, held-out phrasings",
        better="min",
        rows=("after",),
        floors=("paraphrase_recall_heldout_unknown",),
        section="attacks",
        attack=REPHRASINGS,
    ),
    Metric(
        "paraphrase_recall_heldout_unknown",
        "recall, held-out phrasings, unknown entities (floor)",
        scope="floor",
        section="attacks",
        attack=REPHRASINGS,
    ),
    Metric(
        "paraphrase_recall_context",
        "recall, entity in a longer context",
        better="min",
        floors=("paraphrase_recall_context_unknown",),
        section="attacks",
        attack=REPHRASINGS,
        compare=True,
        summary=True,
    ),
    Metric(
        "paraphrase_recall_context_unknown",
        "recall, longer context, unknown entities (floor)",
        scope="floor",
        section="attacks",
        attack=REPHRASINGS,
    ),
    Metric(
        "paraphrase_recall_question",
        "recall, question form",
        better="min",
        floors=("paraphrase_recall_question_unknown",),
        section="attacks",
        attack=REPHRASINGS,
        compare=True,
    ),
    Metric(
        "paraphrase_recall_question_unknown",
        "recall, question form, unknown entities (floor)",
        scope="floor",
        section="attacks",
        attack=REPHRASINGS,
    ),
    Metric(
        "generation_leak_rate",
        "free generation states a target's fact",
        better="min",
        floors=("generation_leak_rate_unknown",),
        section="attacks",
        attack=FREE_GENERATION,
        compare=True,
        summary=True,
    ),
    Metric(
        "generation_leak_rate_unknown",
        "free generation states an unknown entity's fact (floor)",
        scope="floor",
        section="attacks",
        attack=FREE_GENERATION,
    ),
    Metric(
        "generation_degenerate_rate",
        "free generation is gibberish",
        better="min",
        rows=("after",),
        section="attacks",
        attack=FREE_GENERATION,
    ),
    Metric("generation_samples", "free generation about the targets", section="hidden"),
    Metric("generation_samples_unknown", "free generation about unknown entities", scope="floor", section="hidden"),
)
register(*ATTACK_METRICS)
# measured on the original model only, so written without a _before twin (the recall floors keep theirs)
FLOOR_KEYS = tuple(m.key for m in ATTACK_METRICS if m.scope == "floor")


def _eval_facts(entities: list[Entity], heldout: bool | None) -> list[tuple[Entity, Fact]]:
    return [(e, f) for e in entities for f in scored_facts(e, heldout)]


def state_attacks(
    ctx: EvaluationContext,
    model: nn.Module,
    acts_forget: torch.Tensor,
    acts_unknown: torch.Tensor,
    acts_known: torch.Tensor,
    floors: bool,
) -> dict:
    """Probes, paraphrases and free generation on ``model`` (``acts_*``: its activations at the entity's
    last token, every fact prompt, of the targets, unknown and other known entities); ``floors``: also on
    unknown entities."""
    split, tok, n_tok, seed = ctx.split, ctx.tokenizer, ctx.cfg.eval.max_new_tokens, ctx.cfg.seed
    synthetic = ctx.world is not None
    m: dict = {"forget_probe_auc_residual": ctx.residual_probe.auc(acts_forget, acts_unknown)}
    acc = attribute_probe_accuracy(
        FactRows.of(split.other_known, acts_known),
        {"forget": FactRows.of(split.forget, acts_forget), "unknown": FactRows.of(ctx.unknown_eval, acts_unknown)},
        seed=seed,
    )
    m["attribute_probe_acc_forget"], m["attribute_probe_acc_unknown"] = acc["forget"], acc["unknown"]
    groups = {"": split.forget}
    if floors:  # one never-seen entity per target, of its type: the like-for-like floor
        m["attribute_probe_majority_forget"] = acc["forget_majority"]  # the same guess for every model state
        groups["_unknown"] = floor_entities(split.forget, ctx.unknown_eval)
    distractors = split.heldout_known or split.retain
    for suffix, entities in groups.items():
        held = heldout_facts(entities)
        m[f"paraphrase_recall_heldout{suffix}"] = share_answered(
            model, tok, [f.prompt for _, f in held], [f.answer for _, f in held], n_tok
        )
        # real models: the cloze statement, which these attacks rephrase (its held-out phrasings are recall's)
        base = _eval_facts(entities, ctx.eval_heldout if synthetic else (False if ctx.eval_heldout else None))
        answers = [f.answer for _, f in base]
        m[f"paraphrase_recall_context{suffix}"] = share_answered(
            model, tok, context_prompts(base, distractors, " ." if synthetic else ".", seed), answers, n_tok
        )
        if not synthetic:  # the world model knows no instruction format
            m[f"paraphrase_recall_question{suffix}"] = share_answered(
                model, tok, question_prompts(tok, base), answers, QUESTION_TOKENS, match=mentions
            )
        leak, degenerate, samples = free_generation(model, tok, entities, synthetic, ctx.cfg.attack.generation_tokens)
        m[f"generation_leak_rate{suffix}"] = leak
        m[f"generation_samples{suffix}"] = samples[:8]
        if not suffix:
            m["generation_degenerate_rate"] = degenerate
    return m


# the original model relearning its own held-back facts may lose this much of them before the attack is called
# miscalibrated (the recall of a few dozen facts moves by a fact or two with any update)
DAMAGE_MARGIN = 0.1


def relearn_floors(ctx: EvaluationContext) -> dict:
    """The attack on the original model: on the targets (what full knowledge gives) and on unknown
    entities (what the attack teaches from nothing: the floor)."""
    a = ctx.cfg.attack
    if not a.enabled or a.relearn_steps == 0:
        return {}
    original = _relearn(ctx, ctx.model, ctx.split.forget, None)
    unknown = _relearn(ctx, ctx.model, floor_entities(ctx.split.forget, ctx.unknown_eval), None)
    if original.recall_after < original.recall_before - DAMAGE_MARGIN:
        # measured on Gemma-3-270M at 1e-4 (2026-12-06): 0.524 -> 0.000 in 10 steps, so every method "resisted"
        log.warning(
            "the relearning attack damages the original model (its held-back facts %.3f -> %.3f after %d steps at "
            "lr %g): on this model it measures damage, not recovery; lower attack.relearn_lr (--relearn-lr), "
            "e.g. to %g",
            original.recall_before,
            original.recall_after,
            a.relearn_steps,
            a.relearn_lr,
            a.relearn_lr / 10,
        )
    return {
        "relearn_recall_original": original.recall_after,
        "relearn_recall_original_best": original.recall_best,
        "relearn_curve_original": original.curve,
        "relearn_recall_unknown": unknown.recall_after,
        "relearn_recall_unknown_best": unknown.recall_best,
        "relearn_curve_unknown": unknown.curve,
        "relearn_steps": a.relearn_steps,
        "relearn_lr": a.relearn_lr,
    }


def relearn_metrics(
    ctx: EvaluationContext,
    model: nn.Module,
    context: Callable[[nn.Module], AbstractContextManager] | None,
    floors: dict,
) -> dict:
    """The attack on an unlearned model; ``relearn_gap_to_unknown`` > 0.10 means it came back."""
    if not floors:
        return {}
    res = _relearn(ctx, model, ctx.split.forget, context)
    return floors | {
        "relearn_recall": res.recall_after,
        "relearn_recall_pre_attack": res.recall_before,
        "relearn_recall_best": res.recall_best,
        "relearn_recovery": res.recall_after - res.recall_before,
        "relearn_curve": res.curve,
        "relearn_entities": res.n_entities,
        "relearn_gap_to_unknown": res.recall_after - floors["relearn_recall_unknown"],
    }


def _relearn(ctx: EvaluationContext, model: nn.Module, entities: list[Entity], context):
    a = ctx.cfg.attack
    return relearn_attack(
        model,
        ctx.tokenizer,
        entities,
        a.relearn_steps,
        a.relearn_lr,
        a.relearn_eval_every,
        ctx.eval_heldout,
        ctx.cfg.eval.max_new_tokens,
        ctx.cfg.seed,
        context,
        embeddings=embeddings_edited(ctx.model, model),
    )
