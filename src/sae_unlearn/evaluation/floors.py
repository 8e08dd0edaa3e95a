"""The floors every recall is read against, measured on the original model: unknown entities, and the
targets' own prompts with unknown names swapped in, on the same phrasings as each recall.
"""

from __future__ import annotations

from torch import nn

from sae_unlearn.context import EvaluationContext
from sae_unlearn.entities.types import Entity
from sae_unlearn.metrics.recall import recall, substituted_recall
from sae_unlearn.metrics.registry import Metric, register

register(
    Metric("unknown_recall", "unknown-entity recall (floor)", scope="floor"),
    Metric(
        "unknown_recall_same_prompts", "unknown names in the targets' own prompts (like-for-like floor)", scope="floor"
    ),
    Metric("unknown_recall_same_prompts_form_{form}", "{form} with unknown names (floor)", scope="floor"),
    Metric(
        "unknown_recall_same_prompts_train_phrasing", "unknown names in the trained phrasings (floor)", scope="floor"
    ),
    Metric("unknown_recall_train_phrasing", "unknown-entity recall, trained phrasings (floor)", scope="floor"),
    Metric(
        "unknown_recall_same_prompts_all_facts",
        "unknown names in the targets' own prompts, incl. those facts",
        scope="floor",
    ),
)


def recall_by_phrasing(model: nn.Module, tok, forget: list[Entity], n_tok: int) -> dict[str, float]:
    """``forget_recall_form_<phrasing>`` for each held-out phrasing the targets' facts name."""
    return {
        f"forget_recall_form_{form}": recall(model, tok, _only_phrasing(forget, form), True, n_tok)
        for form in _heldout_forms(forget)
    }


def floors_by_phrasing(
    model: nn.Module, tok, forget: list[Entity], unknown: list[Entity], n_tok: int
) -> dict[str, float]:
    """``unknown_recall_same_prompts_form_<phrasing>``: each held-out phrasing's floor, the targets' prompts
    of that phrasing with unknown names swapped in (the twin of ``recall_by_phrasing``)."""
    return {
        f"unknown_recall_same_prompts_form_{form}": substituted_recall(
            model, tok, _only_phrasing(forget, form), unknown, heldout=True, max_new_tokens=n_tok
        )
        for form in _heldout_forms(forget)
    }


def _heldout_forms(entities: list[Entity]) -> list[str]:
    return sorted({f.phrasing for e in entities for f in e.facts if f.heldout and f.phrasing})


def _only_phrasing(entities: list[Entity], form: str) -> list[Entity]:
    return [Entity(e.name, e.type, [f for f in e.facts if f.phrasing == form or not f.heldout]) for e in entities]


def recall_floors(ctx: EvaluationContext, model: nn.Module) -> dict[str, float]:
    """Floors, on the original model: unknown entities (the edit is not about them) and the targets' own
    prompts with their names swapped for unknown ones, on the same phrasings as each recall."""
    split, tok, n_tok, held = ctx.split, ctx.tokenizer, ctx.cfg.eval.max_new_tokens, ctx.eval_heldout
    m = {
        "unknown_recall": recall(model, tok, ctx.scored(ctx.unknown_eval), held, n_tok),
        "unknown_recall_same_prompts": substituted_recall(
            model, tok, split.forget, ctx.unknown_eval, heldout=held, max_new_tokens=n_tok
        ),
    }
    if ctx.answerable_checked:
        m["unknown_recall_same_prompts_all_facts"] = substituted_recall(
            model, tok, split.forget, ctx.unknown_eval, heldout=held, max_new_tokens=n_tok, include_answerable=True
        )
    if held:
        m["unknown_recall_train_phrasing"] = recall(model, tok, ctx.scored(ctx.unknown_eval), False, n_tok)
        m["unknown_recall_same_prompts_train_phrasing"] = substituted_recall(
            model, tok, split.forget, ctx.unknown_eval, heldout=False, max_new_tokens=n_tok
        )
        m |= floors_by_phrasing(model, tok, split.forget, ctx.unknown_eval, n_tok)
    return m
