"""Which facts measure knowing the entity: those the model does not complete for made-up names.

Why: a completion prompt can carry its own answer ("X is home to the Eiffel" -> "Tower", "X is on
the continent of" -> "Europe" for most European-sounding names). The model gives such answers for
names it never saw, so recalling them shows nothing about the entity, and a method cannot (and must
not) make the model stop answering them for one name only. On the bundled file about a third of the
known entities' facts are like this for SmolLM2, and they were nearly all of the forget recall left
after SAE-guided unlearning (docs/metrics.md). Ferrando et al. score knowledge on attributes that
need the entity; with a hand-written file we measure which prompts do, once, on the original model.
"""

from __future__ import annotations

import dataclasses

from torch import nn

from sae_unlearn.entities.phrasings import relation_key
from sae_unlearn.entities.types import Entity
from sae_unlearn.metrics.recall import answer_matches, substituted_prompts
from sae_unlearn.models.generation import greedy_continuations


def mark_answerable(
    model: nn.Module, tokenizer, entities: list[Entity], substitutes: list[Entity], per_entity: int, max_new_tokens: int
) -> list[Entity]:
    """Copies of ``entities`` whose facts carry ``answerable=True`` where the greedy continuation with
    any of ``per_entity`` made-up names of the entity's type in its place starts with the answer.

    Asked on the training phrasings; a fact's held-out phrasings (same relation) share its flag: they
    ask the same thing, and asking them all would triple the cost of probing a real model."""
    rows = substituted_prompts(entities, substitutes, per_entity, heldout=False, include_answerable=True)
    conts = greedy_continuations(model, tokenizer, [r[2] for r in rows], max_new_tokens)
    hit = {
        (t, relation_key(entities[t].name, entities[t].facts[i]))
        for (t, i, _, answer), cont in zip(rows, conts)
        if answer_matches(cont, answer)
    }
    return [
        dataclasses.replace(
            e, facts=[dataclasses.replace(f, answerable=(t, relation_key(e.name, f)) in hit) for f in e.facts]
        )
        for t, e in enumerate(entities)
    ]
