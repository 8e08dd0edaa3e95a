"""The validation split: the targets' facts asked in words that neither a loss nor the evaluation uses.

Why (issue 23): the stop rule and any choice of settings must read phrasings that are not the test's (the
held-out phrasings the headline numbers read) and not the loss's (a rule on the training prompts fires as soon as
those are suppressed, while the held-out phrasings still lag: GradDiff stopped at held-out forget 0.444 on the micro
world). Each training fact is asked after one opening sentence. Real models get English openings that no loss
(entities/contexts.py ``LEAD_INS``) and no evaluation phrasing (entities/phrasings.py) uses; a word-level
vocabulary such as the synthetic world's cannot write those, so it gets the world's own training prefixes, which
its losses (bare cores) and its held-out phrasings (other prefixes) never use; SAE-guided's ``lead_ins`` there
train two of them (contexts.WORLD_LEAD_INS), so with that option the split is partly a loss phrasing
(docs/synthetic_world.md).
"""

from __future__ import annotations

import dataclasses

from sae_unlearn.entities.contexts import after_lead_in, fact_statements
from sae_unlearn.entities.synthetic import TRAIN_PREFIXES
from sae_unlearn.entities.types import Entity, Fact
from sae_unlearn.entities.vocabulary import in_vocabulary

VALIDATION_PHRASING = "validation"
ENGLISH_OPENINGS = (
    "As far as I can remember,",
    "A librarian I met last week told me that",
    "The card at the back of the quiz box says that",
    "I read in this morning's newspaper that",
)
WORLD_OPENINGS = tuple(p for p in TRAIN_PREFIXES if p)


def validation_openings(tokenizer) -> tuple[str, ...]:
    return in_vocabulary(tokenizer, ENGLISH_OPENINGS, WORLD_OPENINGS)


def validation_entities(entities: list[Entity], tokenizer, train_phrasing: bool | None = False) -> list[Entity]:
    """Each entity with only validation facts: its training facts (``train_phrasing`` as ``fact_prompts``'
    ``heldout``) after an opening, a different one for each next fact. With no writable opening the training
    facts come back as they are (the stop rule then reads the loss's prompts, as before this split existed)."""
    openings = validation_openings(tokenizer)
    out = []
    for e in entities:
        train = [f for f in fact_statements(e, train_phrasing) if f.answer]
        facts: list[Fact] = [
            dataclasses.replace(
                f,
                prompt=after_lead_in(openings[i % len(openings)], f.prompt, e.name) if openings else f.prompt,
                heldout=False,
                phrasing=VALIDATION_PHRASING,
            )
            for i, f in enumerate(train)
        ]
        out.append(dataclasses.replace(e, facts=facts))
    return out
