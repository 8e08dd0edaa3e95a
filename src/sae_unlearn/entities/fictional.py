"""Fictional names of the same types as a real entity file: entities no model can know.

They are the clean "unknown" side of the known/unknown split on real models (Ferrando et al. use
made-up names the same way). Each fictional entity borrows the fact prompts of a real entity of
its type with the name swapped, so its recall measures what the model guesses from the prompt
alone: the floor a forgotten entity should fall to.
"""

from __future__ import annotations

import dataclasses
import random

from sae_unlearn.entities.types import Entity

_ONSETS = "b br c d dr f g gr h j k kl l m n p pr qu r s st t tr v w z".split()
_VOWELS = "a e i o u ae ei ou ia".split()
_CODAS = ["", "", "n", "r", "l", "s", "th", "v", "m", "nd", "rk"]

_SUFFIXES = {
    "city": ["ford", "grad", "ville", "burg", "haven", "mouth", "stad", "polis", "wick", "ora"],
    "country": ["ia", "stan", "land", "ova", "ar", "esh", "istan", "onia"],
    "organisation": [
        " Industries",
        " Group",
        " Corporation",
        " Holdings",
        " Systems",
        " United",
        " Records",
        " Institute",
    ],
    "work": [],
    "person": [],
}


def _word(rng: random.Random, syllables: int) -> str:
    parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)]
    return ("".join(parts) + rng.choice(_CODAS)).capitalize()


def fictional_name(etype: str, rng: random.Random) -> str:
    if etype == "person":
        return f"{_word(rng, 2)} {_word(rng, rng.choice([2, 3]))}"
    if etype == "work":
        return f"The {_word(rng, 2)} of {_word(rng, 2)}"
    suffixes = _SUFFIXES.get(etype) or [""]
    return _word(rng, rng.choice([1, 2])) + rng.choice(suffixes)


def fictional_entities(
    templates: list[Entity], per_type: int, seed: int = 0, avoid: set[str] | None = None
) -> list[Entity]:
    """``per_type`` new names for every type in ``templates``, each with one template entity's prompts."""
    rng = random.Random(seed)
    taken = set(avoid or ()) | {e.name for e in templates}
    by_type: dict[str, list[Entity]] = {}
    for e in templates:
        by_type.setdefault(e.type, []).append(e)
    out: list[Entity] = []
    for etype in sorted(by_type):
        pool = list(by_type[etype])
        rng.shuffle(pool)
        for i in range(per_type):
            name = fictional_name(etype, rng)
            while name in taken:
                name = fictional_name(etype, rng)
            taken.add(name)
            source = pool[i % len(pool)]
            facts = [dataclasses.replace(f, prompt=f.prompt.replace(source.name, name)) for f in source.facts]
            out.append(Entity(name=name, type=etype, facts=facts))
    return out
