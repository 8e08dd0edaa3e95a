"""Sentences that mention an entity without asking any fact: extra contexts for the unlearning losses.

Why: a loss that only sees each target's fact prompts can learn to dodge those sentences while the
entity stays known elsewhere (issue 21). The residual at the entity's last token depends on every token
before it, so the representation must be moved after many different lead-ins, and kept for other
entities after the same lead-ins (minimal pairs), for the change to be about the entity. None of these
is an evaluation phrasing (entities/phrasings.py): they name no relation and give no answer.
"""

from __future__ import annotations

import dataclasses

from sae_unlearn.entities.types import Entity, Fact

CONTEXT_PHRASING = "context"
CONTEXTS = (
    "{e}",
    "Tell me about {e}.",
    "Have you ever heard of {e}?",
    "I have a question about {e}:",
    "Here is a short text about {e}.",
    "Yesterday someone brought up {e}, and",
    "Facts about {e}:",
    "What is {e} known for?",
    "My friend keeps talking about {e}, so",
    "The article was mostly about {e} and",
    "Nobody in the room had anything to say about {e} until",
    "Write one sentence about {e}:",
)


def with_contexts(entities: list[Entity], n: int) -> list[Entity]:
    """Each entity with the first ``n`` contexts appended as answerless training facts (0: unchanged)."""
    if n <= 0:
        return entities
    return [dataclasses.replace(e, facts=list(e.facts) + [
        Fact(c.replace("{e}", e.name), "", "", heldout=False, phrasing=CONTEXT_PHRASING) for c in CONTEXTS[:n]])
        for e in entities]


def is_context(fact: Fact) -> bool:
    return fact.phrasing == CONTEXT_PHRASING
