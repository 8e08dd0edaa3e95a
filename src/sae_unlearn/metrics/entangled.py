"""Facts of *other* entities that name a forget target, e.g. "London is the capital of the -> United
Kingdom" when the United Kingdom is forgotten, or "Imagine was released by John Lennon after he left
the -> Beatles" when John Lennon is.

Why they are scored apart: such a fact is knowledge about the target as much as about its own entity,
so counting it as retained knowledge would charge a method for forgetting what it was asked to forget,
and counting it as forgotten would hide collateral damage. Recall keeps them out of ``retain`` and
``heldout_known`` and reports them on their own (``entangled_recall``); decision: docs/metrics.md.
"""

from __future__ import annotations

import re

from sae_unlearn.entities.types import Entity, Fact, partition_facts


def names_a_target(fact: Fact, targets: list[Entity]) -> bool:
    """The fact's sentence (prompt, then answer) contains a target's full name as a whole word."""
    sentence = f"{fact.prompt} {fact.answer}"
    return any(re.search(rf"(?<!\w){re.escape(t.name)}(?!\w)", sentence) for t in targets)


def split_entangled(entities: list[Entity], targets: list[Entity]) -> tuple[list[Entity], list[Entity]]:
    """(the entities with their target-naming facts removed, those facts as entities of their own);
    an entity left without facts drops out of the first list."""
    return partition_facts(entities, lambda f: names_a_target(f, targets))
