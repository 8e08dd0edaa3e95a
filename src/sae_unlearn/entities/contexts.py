"""Sentences that mention an entity without asking any fact: extra contexts for the unlearning losses.

Why: a loss that only sees each target's fact prompts can learn to dodge those sentences while the
entity stays known elsewhere (issue 21). The residual at the entity's last token depends on every token
before it, so the representation must be moved after many different lead-ins, and kept for other
entities after the same lead-ins (minimal pairs), for the change to be about the entity. None of these
is an evaluation phrasing (entities/phrasings.py): they name no relation and give no answer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from functools import partial

from sae_unlearn.entities.types import Entity, Fact
from sae_unlearn.entities.vocabulary import in_vocabulary

CONTEXT_PHRASING = "context"
LEAD_IN_PHRASING = "lead_in"
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
    return [
        dataclasses.replace(
            e,
            facts=list(e.facts)
            + [Fact(c.replace("{e}", e.name), "", "", heldout=False, phrasing=CONTEXT_PHRASING) for c in CONTEXTS[:n]],
        )
        for e in entities
    ]


def is_context(fact: Fact) -> bool:
    return fact.phrasing == CONTEXT_PHRASING


# Sentence openings put before a training fact, so the entity sits deep in the sentence as in a question or
# a passing mention. None is an evaluation phrasing's (entities/phrasings.py ``_PASSING``): the headline
# numbers read lead-ins that no loss saw.
LEAD_INS = (
    "According to the notes I took at the lecture,",
    "My grandmother, who reads a lot, always says that",
    "It is written on the first page of the guidebook that",
    "Someone asked me about this yesterday, and I told them that",
    "In a quiz on the radio last night, the answer was that",
    "If I remember the documentary correctly,",
)
# The same for a word-level vocabulary (the synthetic world's, where the English ones are ``[UNK]`` tokens): the
# world's own training openings (entities/synthetic.TRAIN_PREFIXES) that share no two words in a row with a held-out
# opening (synthetic.HELDOUT_PREFIXES: "we know that" would be three quarters of "in fact we know that").
WORLD_LEAD_INS = ("as everyone knows ,", "of course ,")


# A training fact turned into a question that the cloze itself asks: the name inside a "Q: ... A:" exchange, the
# answer right after "A:", as in a question. None is an evaluation phrasing's (entities/phrasings.py asks per
# relation, "Which country has Paris as its capital city?", after an example pair; these end the cloze with
# "what?" and have no example), so the headline's questions stay unseen by any loss.
QUESTION_FRAME_PHRASING = "question_frame"
QUESTION_FRAMES = ("Q: {s} what? A:", "Question: {s} what? Answer:")


def after_lead_in(lead: str, prompt: str, name: str) -> str:
    body = prompt if prompt.startswith(name) or not prompt[:1].isupper() else prompt[:1].lower() + prompt[1:]
    return f"{lead} {body}"


def fact_statements(entity: Entity, heldout: bool | None = False) -> list[Fact]:
    """The entity's own facts (``heldout`` as ``fact_prompts``': None takes all), without the contexts and lead-ins
    added for the losses: what lead-ins and the validation split (entities/validation.py) are built from."""
    return [
        f
        for f in entity.facts
        if (heldout is None or f.heldout == heldout)
        and f.phrasing not in (CONTEXT_PHRASING, LEAD_IN_PHRASING, QUESTION_FRAME_PHRASING)
    ]


def lead_ins_for(tokenizer) -> tuple[str, ...]:
    """The lead-ins ``tokenizer`` writes: English, or the world's for a word-level vocabulary."""
    return in_vocabulary(tokenizer, LEAD_INS, WORLD_LEAD_INS)


def with_lead_ins(entities: list[Entity], n: int, lead_ins: Sequence[str] = LEAD_INS) -> list[Entity]:
    """Each entity with every training fact also asked after the first ``n`` of ``lead_ins`` (0: unchanged; all of
    them when there are fewer): the same answer, the entity further from the sentence start."""
    return _with_rewritten_facts(
        entities, [partial(after_lead_in, lead) for lead in lead_ins[: max(n, 0)]], LEAD_IN_PHRASING
    )


def with_question_frames(entities: list[Entity], n: int) -> list[Entity]:
    """Each entity with every training fact also asked as a question in the first ``n`` frames (0: unchanged):
    "Paris is the capital of" -> "Q: Paris is the capital of what? A:", same answer."""
    frames = [partial(_framed, frame) for frame in QUESTION_FRAMES[: max(n, 0)]]
    return _with_rewritten_facts(entities, frames, QUESTION_FRAME_PHRASING)


def _framed(frame: str, prompt: str, _name: str) -> str:
    return frame.replace("{s}", prompt)


def _with_rewritten_facts(
    entities: list[Entity], rewrites: Sequence[Callable[[str, str], str]], phrasing: str
) -> list[Entity]:
    """Each entity with every training fact (``fact_statements``) added again per rewrite of its prompt (prompt,
    name -> prompt), fact by fact, tagged ``phrasing``; no rewrite: the entities unchanged."""
    if not rewrites:
        return entities
    return [
        dataclasses.replace(
            e,
            facts=list(e.facts)
            + [
                dataclasses.replace(f, prompt=rewrite(f.prompt, e.name), phrasing=phrasing)
                for f in fact_statements(e, heldout=False)
                for rewrite in rewrites
            ],
        )
        for e in entities
    ]
