"""Neighbour names: a target's name with one word swapped ("Lake Tarvo" -> "Port Tarvo", "Lake Zenn").

Why (issue 21): the known entities in no loss that lose facts are, out of proportion, those sharing a word of a
target's name (on the synthetic world 27 of 31 sharing the last word lost a fact, against 46 % of the others;
docs/results.md, session 43), and putting the retained namesakes in every step did not protect the held-out
ones. The edit spreads along the name's words. Model editing checks the same thing with "neighbourhood
prompts" (ROME/MEMIT's specificity); here the retain term is given names that are nobody: the target's own
training prompts with a neighbour name must keep the original model's residual and next-token distribution.
A neighbour is never an entity of the split, so no held-out known entity enters a loss under another role.
"""

from __future__ import annotations

import random

from sae_unlearn.entities.contexts import CONTEXT_PHRASING, fact_statements
from sae_unlearn.entities.types import Entity, Fact


def neighbour_names(target: Entity, donors: list[Entity], taken: set[str], n: int) -> list[str]:
    """Up to ``n`` names made from ``target``'s by swapping one word for the word at the same place in a donor's
    name (same type, same word count), the last word kept first (it completes the identity), then the first;
    none in ``taken`` and none a donor's own name. The same target and donors give the same names (seeded by the
    target's name)."""
    taken = taken | {d.name for d in donors}
    words = target.name.split()
    if n <= 0 or len(words) < 2:
        return []
    same_shape = [d.name.split() for d in donors if d.type == target.type and len(d.name.split()) == len(words)]
    by_place: list[list[str]] = []
    for place in (0, len(words) - 1):  # swap the first word (keeping the last), then the last
        swaps = sorted({d[place] for d in same_shape} - {words[place]})
        random.Random(f"{target.name}/{place}").shuffle(swaps)
        by_place.append([" ".join(words[:place] + [w] + words[place + 1 :]) for w in swaps])
    names: list[str] = []
    for pair in zip(*by_place, strict=False):  # the two kinds in turn, a taken name skipped
        names += [name for name in pair if name not in taken and name not in names]
    leftovers = [name for kind in by_place for name in kind if name not in taken and name not in names]
    return (names + leftovers)[:n]


def neighbour_entities(forget: list[Entity], donors: list[Entity], taken: set[str], n: int) -> list[Entity]:
    """Per target, ``n`` neighbour names asked in the target's training prompts, as answerless rows (the
    retain term keeps their residual and next-token distribution; there is no answer to keep)."""
    out = []
    for target in forget:
        prompts = [f.prompt for f in fact_statements(target, heldout=False) if target.name in f.prompt]
        for name in neighbour_names(target, donors, taken, n):
            facts = [Fact(p.replace(target.name, name), "", "", phrasing=CONTEXT_PHRASING) for p in prompts]
            out.append(Entity(name, target.type, facts))
    return out
