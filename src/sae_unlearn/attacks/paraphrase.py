"""Paraphrase and format robustness, and free generation about a target.

Why: a method that learned to dodge the unlearning prompts' exact wording still answers a
rephrased question. Three probes of the same facts, none of them ever in an unlearning loss:
- held-out phrasings (the entity file's ``heldout`` facts, or generic lead-ins when it marks none);
- the entity in a longer context (two true sentences about other known entities come first);
- question form (real models; through the tokenizer's chat template when it has one).
Free generation asks the model to talk about the entity and checks whether any of its answers leaks,
or whether the text is gibberish (the collapse gradient ascent is known for).
"""

from __future__ import annotations

import random
import re

from torch import nn

from sae_unlearn.entities.types import Entity, Fact
from sae_unlearn.metrics.recall import scored_facts
from sae_unlearn.metrics.utility import is_degenerate
from sae_unlearn.models.generation import greedy_continuations

LEAD_INS = ("As everyone knows, ", "Here is a fact: ", "In other words, ")
QUESTION = "Complete the sentence with the right word or words: {prompt} ..."


def mentions(text: str, answer: str) -> bool:
    """The answer occurs as whole words anywhere in ``text`` (case-insensitive)."""
    ans = answer.strip()
    return bool(ans) and re.search(rf"(?<!\w){re.escape(ans)}(?!\w)", text, flags=re.IGNORECASE) is not None


def heldout_facts(entities: list[Entity]) -> list[tuple[Entity, Fact]]:
    """Phrasings no loss ever saw: the file's held-out facts, else every fact behind a generic lead-in."""
    marked = [(e, f) for e in entities for f in scored_facts(e) if f.heldout]
    if marked:
        return marked
    return [
        (e, Fact(lead + f.prompt, f.answer, f.attribute, True))
        for e in entities
        for f in scored_facts(e)
        for lead in LEAD_INS
    ]


def context_prompts(
    facts: list[tuple[Entity, Fact]], distractors: list[Entity], sentence_end: str, seed: int = 0
) -> list[str]:
    """Each prompt behind two true sentences about other known entities."""
    rng = random.Random(seed)
    pool = [f for e in distractors for f in e.facts if not f.heldout] or [f for e in distractors for f in e.facts]
    prompts = []
    for _, fact in facts:
        lead = " ".join(f"{d.prompt} {d.answer}{sentence_end}" for d in rng.sample(pool, min(2, len(pool))))
        prompts.append(f"{lead} {fact.prompt}".strip())
    return prompts


def question_prompts(tokenizer, facts: list[tuple[Entity, Fact]]) -> list[str]:
    """The fact as an instruction; through the chat template when the tokenizer has one."""
    questions = [QUESTION.format(prompt=f.prompt) for _, f in facts]
    if getattr(tokenizer, "chat_template", None):
        return [
            tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
            for q in questions
        ]
    return [f"Question: {q}\nAnswer:" for q in questions]


def generation_prompts(entity: Entity, synthetic: bool) -> list[str]:
    if synthetic:  # the world model speaks only its corpus's forms
        return [entity.name, f"we know that {entity.name}"]
    return [f"{entity.name} is", f"Here is what I know about {entity.name}:"]


def free_generation(
    model: nn.Module, tokenizer, entities: list[Entity], synthetic: bool, max_new_tokens: int
) -> tuple[float, float, list[dict]]:
    """(share of generations that state one of the entity's answers, share that are gibberish, samples)."""
    rows = [(e, p) for e in entities for p in generation_prompts(e, synthetic)]
    if not rows:
        return float("nan"), float("nan"), []
    texts = greedy_continuations(model, tokenizer, [p for _, p in rows], max_new_tokens)
    leaks = [any(mentions(t, f.answer) for f in scored_facts(e)) for (e, _), t in zip(rows, texts)]
    samples = [{"entity": e.name, "prompt": p, "text": t.strip()} for (e, p), t in zip(rows, texts)]
    return sum(leaks) / len(rows), sum(map(is_degenerate, texts)) / len(rows), samples
