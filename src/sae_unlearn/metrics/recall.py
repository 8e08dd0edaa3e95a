"""QA recall: does the greedy continuation start with the answer?"""

from __future__ import annotations

import re
from typing import Callable

from torch import nn

from sae_unlearn.entities.types import Entity, Fact
from sae_unlearn.models.generation import continuations, greedy_continuations, reuse_greedy_continuations  # noqa: F401  (re-exported)

_LEADING = re.compile(r"^[\s\W_]+")


def normalise(text: str) -> str:
    """Case-insensitive, leading whitespace and punctuation ignored (issue 4's definition)."""
    return _LEADING.sub("", text).lower()


def answer_matches(continuation: str, answer: str) -> bool:
    """The normalised continuation starts with the normalised answer as a whole word: "Tower." and "Tower of
    London" say "Tower", "Towering" and "Towers" do not (a prefix is another word). An empty answer never matches."""
    ans = normalise(answer)
    cont = normalise(continuation)
    if not ans or not cont.startswith(ans):
        return False
    return re.match(r"\w", cont[len(ans) :]) is None  # the answer ends a word: no letter, digit or _ next


def share_answered(
    model: nn.Module,
    tokenizer,
    prompts: list[str],
    answers: list[str],
    max_new_tokens: int,
    match: Callable[[str, str], bool] = answer_matches,
) -> float:
    """Share of greedy continuations that ``match`` their answer (default: start with it); NaN for no prompts."""
    if not prompts:
        return float("nan")
    conts = greedy_continuations(model, tokenizer, prompts, max_new_tokens)
    return sum(match(c, a) for c, a in zip(conts, answers)) / len(prompts)


def scored_facts(entity: Entity, heldout: bool | None = None, include_answerable: bool = False) -> list[Fact]:
    """The facts that measure knowing ``entity``: ``heldout`` picks phrasings (None: all), and facts the
    model completes for made-up names too (``Fact.answerable``) are left out unless asked for."""
    return [
        f
        for f in entity.facts
        if (heldout is None or f.heldout == heldout) and (include_answerable or not f.answerable)
    ]


def recall(
    model: nn.Module,
    tokenizer,
    entities: list[Entity],
    heldout: bool | None = True,
    max_new_tokens: int = 4,
    include_answerable: bool = False,
) -> float:
    """Share of facts recalled; ``heldout=True`` uses only phrasings absent from training."""
    facts = [f for e in entities for f in scored_facts(e, heldout, include_answerable)]
    return share_answered(model, tokenizer, [f.prompt for f in facts], [f.answer for f in facts], max_new_tokens)


def entity_recall_shares(
    model: nn.Module, tokenizer, entities: list[Entity], max_new_tokens: int = 4, heldout: bool | None = None
) -> list[float]:
    """Per entity, the share of its facts recalled (the known/unknown probing of Ferrando et al.);
    ``heldout`` picks phrasings (None: all; real models probe on the training phrasing)."""
    facts = [(i, f) for i, e in enumerate(entities) for f in e.facts if heldout is None or f.heldout == heldout]
    conts = greedy_continuations(model, tokenizer, [f.prompt for _, f in facts], max_new_tokens)
    hits, counts = [0] * len(entities), [0] * len(entities)
    for (i, f), c in zip(facts, conts):
        hits[i] += answer_matches(c, f.answer)
        counts[i] += 1
    return [h / max(1, n) for h, n in zip(hits, counts)]


def substituted_prompts(
    targets: list[Entity],
    substitutes: list[Entity],
    per_target: int,
    heldout: bool | None,
    include_answerable: bool = False,
) -> list[tuple[int, int, str, str]]:
    """(target index, fact index, prompt, answer): each scored fact of each target with its name swapped
    for up to ``per_target`` substitutes of the target's type."""
    rows = []
    for t, target in enumerate(targets):
        subs = [s for s in substitutes if s.type == target.type][:per_target]
        scored = scored_facts(target, heldout, include_answerable)
        for i, fact in enumerate(target.facts):
            if fact in scored:
                rows += [(t, i, fact.prompt.replace(target.name, sub.name), fact.answer) for sub in subs]
    return rows


def substituted_recall(
    model: nn.Module,
    tokenizer,
    targets: list[Entity],
    substitutes: list[Entity],
    per_target: int = 4,
    max_new_tokens: int = 4,
    heldout: bool | None = True,
    include_answerable: bool = False,
) -> float:
    """Recall of each target's answers when its name is swapped for unknown names of the same type.

    This is what a perfectly "unknown-like" target representation can reach: whatever the model still
    infers from the prompt or from name parts shared with the target (a first name, a city prefix).
    """
    rows = substituted_prompts(targets, substitutes, per_target, heldout, include_answerable)
    return share_answered(model, tokenizer, [r[2] for r in rows], [r[3] for r in rows], max_new_tokens)
