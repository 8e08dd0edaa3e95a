"""Every metric of one model state, and the before/after record of an edited model against the original."""

from __future__ import annotations

import time
from contextlib import nullcontext

import numpy as np
import torch
from torch import nn

from sae_unlearn.attacks.suite import FLOOR_KEYS, relearn_metrics, state_attacks
from sae_unlearn.context import EvaluationContext
from sae_unlearn.entities.types import Entity
from sae_unlearn.evaluation.floors import recall_by_phrasing, recall_floors
from sae_unlearn.methods import UnlearnOutcome
from sae_unlearn.methods.adapters import merged_adapter
from sae_unlearn.metrics.alignment import centroid_distances, entity_activations, sae_codes
from sae_unlearn.metrics.entangled import split_entangled
from sae_unlearn.metrics.recall import recall, scored_facts
from sae_unlearn.metrics.registry import Metric, computed, is_floor, register
from sae_unlearn.metrics.utility import degenerate_rate, perplexity
from sae_unlearn.models.generation import greedy_continuations, reuse_greedy_continuations

register(
    Metric(
        "forget_recall",
        "forget recall (held-out phrasings)",
        better="floor",
        floors=("unknown_recall_same_prompts", "unknown_recall"),
        compare=True,
        summary=True,
    ),
    Metric(
        "forget_recall_form_{form}",
        "forget recall, {form}",
        better="floor",
        floors=("unknown_recall_same_prompts_form_{form}",),
        summary=True,
    ),
    Metric(
        "forget_recall_train_phrasing",
        "forget recall, the phrasings the losses train on",
        better="floor",
        floors=("unknown_recall_same_prompts_train_phrasing", "unknown_recall_train_phrasing"),
        summary=True,
    ),
    Metric(
        "forget_recall_all_facts",
        "forget recall incl. facts made-up names also complete",
        better="floor",
        floors=("unknown_recall_same_prompts_all_facts",),
    ),
    Metric("retain_recall", "retain recall", better="max", compare=True, summary=True),
    Metric(
        "heldout_known_recall", "held-out known recall (entities in no loss)", better="max", compare=True, summary=True
    ),
    Metric("retain_recall_train_phrasing", "retain recall, trained phrasings", better="max", rows=("after",)),
    Metric(
        "heldout_known_recall_train_phrasing", "held-out known recall, trained phrasings", better="max", rows=("after",)
    ),
    Metric(
        "entangled_recall",
        "other entities' facts that name a target (scored apart)",
        better="max",
        compare=True,
        summary=True,
    ),
    Metric(
        "forget_classified_unknown",
        "targets classified unknown",
        better="max",
        floors=("unknown_classified_unknown",),
        compare=True,
        summary=True,
    ),
    Metric("unknown_classified_unknown", "unknown entities classified unknown (probe calibration)", scope="floor"),
    Metric(
        "forget_probe_auc",
        "probe AUC targets vs unknown, SAE latents (0.5 = indistinguishable)",
        better=0.5,
        compare=True,
    ),
    Metric("forget_dist_unknown", "targets' distance to unknown centroid", better="min", rows=("after",)),
    Metric("forget_dist_known", "targets' distance to known centroid", better="max", rows=("after",)),
    Metric(
        "perplexity", "perplexity (trained phrasings, other known entities)", better="min", compare=True, summary=True
    ),
    Metric("degenerate_rate", "degenerate generations on targets", better="min", rows=("after",), compare=True),
    Metric(
        "forget_says_unknown",
        'targets answered "no" to "do you know ...?" (synthetic world)',
        better="max",
        compare=True,
    ),
)
# what each method's run adds (evaluation.method_metrics, attack_run.attack_run)
register(
    Metric("steps", "unlearning steps run", scope="method"),
    Metric("seconds", "seconds", scope="method", better="min", compare=True, summary=True),
    Metric("stopped_reason", "why the method stopped", scope="method", section="hidden"),
    Metric(
        "kept_step",
        "the check whose weights were kept: the budget ran out and that check was nearer the floor",
        scope="method",
        section="hidden",
    ),
    Metric("relearn_seconds", "seconds of the relearning attack", scope="method", section="hidden"),
    Metric("evaluate_seconds", "seconds of the evaluation after unlearning", scope="method", section="hidden"),
    Metric("source", "the saved model attacked (`attack`)", scope="method", section="hidden"),
)


def eval_facts(ctx: EvaluationContext, entities: list[Entity]):
    return [f for e in entities for f in e.facts if ctx.eval_heldout is None or f.heldout]


def perplexity_texts(ctx: EvaluationContext, entities: list[Entity]) -> list[str]:
    """Sentences in the language the model knows: the training phrasings (cloze statements).

    The world's held-out templates are word orders that model never saw: their prompt words alone have
    perplexity ~41, and SAE-guided unlearning moved that to ~25 while the answers' rose 1.14 -> 1.45, so the
    sum read as a 33 % *improvement* (docs/metrics.md). On real models the held-out questions and passing
    mentions are templated text whose wording, not knowledge, would dominate the number.
    """
    return [f"{f.prompt} {f.answer} ." for e in entities for f in e.facts if not f.heldout]


def evaluate(
    ctx: EvaluationContext, model: nn.Module, outcome: UnlearnOutcome | None = None, baseline: dict | None = None
) -> dict:
    """Metrics of ``model`` (after) against ``ctx.model`` (before); ``baseline`` caches the "before" half."""
    before = baseline if baseline is not None else evaluate_state(ctx, ctx.model)
    with merged_adapter(model), outcome.context(model) if outcome else nullcontext():
        after = evaluate_state(ctx, model)
    out = {f"{k}_before": v for k, v in before.items() if k not in FLOOR_KEYS} | {
        f"{k}_after": v for k, v in after.items()
    }
    out |= {k: v for k, v in before.items() if is_floor_key(k)}
    return out


def is_floor_key(key: str) -> bool:
    """Measured on the original model only, reported without a suffix (the registry's "floor" scope)."""
    return is_floor(key)


def evaluate_state(ctx: EvaluationContext, model: nn.Module) -> dict:
    """Every metric of one model state; its weights do not change meanwhile, so a prompt asked by
    several metrics is decoded once."""
    with reuse_greedy_continuations(model):
        return _state_metrics(ctx, model)


def evaluate_original(ctx: EvaluationContext) -> tuple[dict, dict[str, torch.Tensor]]:
    """The original model's metrics (floors included), and the SAE codes it computed on the way at the entity's
    last token ("forget", "unknown", "known": the other known entities), which the report's figures reuse."""
    codes: dict[str, torch.Tensor] = {}
    with reuse_greedy_continuations(ctx.model):
        return _state_metrics(ctx, ctx.model, codes), codes


def _state_metrics(ctx: EvaluationContext, model: nn.Module, codes: dict[str, torch.Tensor] | None = None) -> dict:
    split, tok, n_tok = ctx.split, ctx.tokenizer, ctx.cfg.eval.max_new_tokens
    m: dict[str, float] = {}
    held = ctx.eval_heldout
    m["forget_recall"] = recall(model, tok, split.forget, held, n_tok)
    if ctx.answerable_checked:  # the number before facts that made-up names complete were left out
        m["forget_recall_all_facts"] = recall(model, tok, split.forget, held, n_tok, include_answerable=True)
    # facts of other entities that name a target are about the target too: scored apart (metrics/entangled.py)
    retain, entangled_r = split_entangled(split.retain, split.forget)
    heldout_known, entangled_h = split_entangled(split.heldout_known, split.forget)
    retain, heldout_known = ctx.scored(retain), ctx.scored(heldout_known)
    m["retain_recall"] = recall(model, tok, retain, held, n_tok)
    m["heldout_known_recall"] = recall(model, tok, heldout_known, held, n_tok)
    # only where one is scored (a file's entangled facts may all be training phrasings: recall over none is nan)
    if any(scored_facts(e, held) for e in entangled_r + entangled_h):
        m["entangled_recall"] = recall(model, tok, entangled_r + entangled_h, held, n_tok)
    if held:  # the phrasings the losses train on: what suppression of the prompts alone would move
        m["forget_recall_train_phrasing"] = recall(model, tok, split.forget, False, n_tok)
        m["retain_recall_train_phrasing"] = recall(model, tok, retain, False, n_tok)
        m["heldout_known_recall_train_phrasing"] = recall(model, tok, heldout_known, False, n_tok)
        m |= recall_by_phrasing(model, tok, split.forget, n_tok)
    if model is ctx.model:
        m |= recall_floors(ctx, model)
    acts_f, own_f = entity_activations(model, tok, split.forget, ctx.layer)
    acts_u, own_u = entity_activations(model, tok, ctx.unknown_eval, ctx.layer)
    z_f, z_u = sae_codes(ctx.sae, acts_f), sae_codes(ctx.sae, acts_u)
    acts_k = (
        entity_activations(model, tok, split.other_known, ctx.layer)[0]
        if ctx.cfg.attack.enabled or model is ctx.model
        else None
    )
    if codes is not None:  # the original model's: the report's figures read them again (evaluate_original)
        assert acts_k is not None
        codes |= {"forget": z_f, "unknown": z_u, "known": sae_codes(ctx.sae, acts_k)}
    m["forget_classified_unknown"] = ctx.probe.share_unknown(z_f, own_f)
    m["unknown_classified_unknown"] = ctx.probe.share_unknown(z_u, own_u)
    m["forget_probe_auc"] = ctx.probe.auc(z_f, z_u)
    m["forget_dist_known"], m["forget_dist_unknown"] = centroid_distances(z_f, ctx.mu_known, ctx.mu_unknown)
    m["perplexity"] = perplexity(model, tok, perplexity_texts(ctx, split.other_known))
    m["degenerate_rate"], _ = degenerate_rate(model, tok, [f.prompt for f in eval_facts(ctx, split.forget)])
    if ctx.world is not None:  # the world model was taught to answer "no" for entities it does not know
        says_no = greedy_continuations(model, tok, [f"do you know {e.name} ?" for e in split.forget], 1)
        m["forget_says_unknown"] = float(np.mean([s.strip().startswith("no") for s in says_no]))
    if ctx.cfg.attack.enabled:
        assert acts_k is not None
        m |= state_attacks(ctx, model, acts_f, acts_u, acts_k, floors=model is ctx.model)
    # metrics that bring their own computation (evaluation/*.py, the registry)
    for compute in computed(attacks=ctx.cfg.attack.enabled, extended=ctx.cfg.attack.extended):
        m |= compute(ctx, model, model is ctx.model)
    return m


def method_metrics(
    ctx: EvaluationContext, model: nn.Module, outcome: UnlearnOutcome, seconds: float, baseline: dict
) -> dict:
    # one store of greedy answers for the evaluation and the relearning attack's first recall (the same state)
    with merged_adapter(model), reuse_greedy_continuations(model):
        t0 = time.time()
        m = evaluate(ctx, model, outcome, baseline)
        m["evaluate_seconds"] = time.time() - t0
        t0 = time.time()
        relearned = relearn_metrics(ctx, model, outcome.inference_context, ctx.relearn_floors)
    if relearned:
        m |= relearned | {"relearn_seconds": time.time() - t0}
    m["seconds"] = seconds
    m["steps"] = outcome.steps_run
    m["stopped_reason"] = outcome.stopped_reason
    if outcome.best_step is not None:
        m["kept_step"] = outcome.best_step
    return m
