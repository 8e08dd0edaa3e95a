"""Questions that reach a target without naming it (issue 24): the target as the answer of another entity's fact
(reverse: "The capital of France is" -> Paris when Paris is forgotten), the target's own facts asked through a
description by another entity (two-hop: "The capital of France is located on the continent of" -> Europe), and
through another of its names (alias: "Einstein was born in the country of" when "Albert Einstein" is forgotten).

Why: forgetting is claimed for the entity, and an edit that only moved what the model does with the target's name
in the prompt would leave both kinds intact. Each question is returned as an ``Entity`` named after the *bridge*
entity (the one the prompt names), so recall scores it as it scores any fact and the floor is the same question
with the bridge swapped for a never-seen name of its type (``metrics.recall.substituted_recall``): what the
prompt's wording alone gives away.

Built from the entity file itself: a fact of another entity whose answer is a target's name is a reverse question,
and the functional relations below (one answer per bridge) turn such a fact into a description of the target.
Relations that many entities share ("is a city in the country of") give reverse questions but no description.
"""

from __future__ import annotations

import dataclasses
import re

from sae_unlearn.entities.types import Entity, Fact, partition_facts

# the bridge's relation (its fact's ``attribute``, "{e}" the bridge) -> a noun phrase naming the one answer; a
# group named "the" keeps the article some names take ("The capital of the United Kingdom")
DESCRIPTIONS: tuple[tuple[str, str], ...] = (
    (r"The capital of (?P<the>the )?\{e\} is", "the capital of {the}{e}"),
    (r"\{e\} is the capital of( the)?", "the country whose capital is {e}"),
    (r"\{e\} was born in the city of", "the city where {e} was born"),
    (r"\{e\} was born in the country of", "the country where {e} was born"),
    (r"(?P<the>The )?\{e\} is headquartered in", "the city where {the}{e} is headquartered"),
    (r"\{e\} was founded in the city of", "the city where {e} was founded"),
    (r"\{e\} was written by", "the author of {e}"),
    (r"\{e\} was painted by", "the painter of {e}"),
    (r"The film \{e\} was directed by", "the director of the film {e}"),
    (r"\{e\} was founded by", "the founder of {e}"),
    (r"\{e\} (was|is) an? [a-z ]+ from", "the country {e} came from"),
)
REVERSE, TWO_HOP, ALIAS = "reverse", "two_hop", "alias"


def describe(fact: Fact, bridge: str) -> str | None:
    """A noun phrase that names ``fact``'s answer through ``bridge`` ("the capital of France"), or None when the
    relation is not one with a single answer per bridge."""
    for pattern, phrase in DESCRIPTIONS:
        if match := re.fullmatch(pattern, fact.attribute):
            return phrase.format(e=bridge, the="the " if match.groupdict().get("the") else "")
    return None


def _describable(fact: Fact) -> bool:
    """The fact names its entity once and not as a possessive ("{e}'s plays" would read "the author of Hamlet's
    plays")."""
    return fact.attribute.count("{e}") == 1 and "{e}'" not in fact.attribute


def _names_target(fact: Fact, target: Entity) -> bool:
    return fact.answer == target.name and target.name not in fact.prompt


def reverse_questions(targets: list[Entity], pool: list[Entity]) -> list[Entity]:
    """Every fact of another entity in ``pool`` whose answer is a target's name (all its phrasings, so held-out
    ones are scored as held-out), grouped by that entity: the prompt names it, never the target."""
    names = {t.name for t in targets}
    out = []
    for bridge in pool:
        if bridge.name in names:
            continue
        facts = [f for f in bridge.facts if any(_names_target(f, t) for t in targets)]
        if facts:
            out.append(Entity(bridge.name, bridge.type, facts))
    return out


def split_off_answers(entities: list[Entity], targets: list[Entity]) -> tuple[list[Entity], list[Entity]]:
    """(``entities`` without their facts whose answer is a target's name, and the entities that had such facts
    holding only those). Why: "Belgrade is the capital of Serbia" is what the model knows about Belgrade as much
    as about Serbia; kept in a retain set it would ask a method to keep the target's knowledge, and counted as a
    retained or held-out known fact it would score forgetting the target as collateral damage. Reverse questions
    score these facts (``reverse_questions``, built from the whole probed pool). An entity left with no fact is
    dropped from the first list."""
    return partition_facts(entities, lambda f: any(_names_target(f, t) for t in targets))


def two_hop_questions(targets: list[Entity], pool: list[Entity]) -> list[Entity]:
    """Each target's trained-phrasing facts asked with the target replaced by its description through a bridge
    ("The capital of France is located on the continent of" -> Europe), grouped by bridge. Facts whose answer is
    the bridge itself, or that name the target twice or as a possessive, are left out. Marked held out: no loss trains them."""
    by_bridge: dict[tuple[str, str], list[Fact]] = {}
    for target in targets:
        own = [f for f in target.facts if f.phrasing in ("cloze", "") and not f.heldout]
        for bridge in pool:
            if bridge.name == target.name:
                continue
            for link in bridge.facts:
                if not (link.phrasing in ("cloze", "") and _names_target(link, target)):
                    continue
                phrase = describe(link, bridge.name)
                if phrase is None:
                    continue
                for fact in own:
                    if not _describable(fact) or fact.answer in (bridge.name, *bridge.name.split()):
                        continue
                    prompt = fact.attribute.replace("{e}", phrase)
                    by_bridge.setdefault((bridge.name, bridge.type), []).append(
                        Fact(prompt[0].upper() + prompt[1:], fact.answer, fact.attribute, True, phrasing=TWO_HOP)
                    )
    return [Entity(name, etype, facts) for (name, etype), facts in by_bridge.items()]


def alias_questions(targets: list[Entity], pool: list[Entity]) -> list[Entity]:
    """Each target's facts (every phrasing, so held-out ones stay held out) with its name replaced by each of its
    aliases, as an entity named after the alias: the floor swaps the alias for a never-seen name. Facts whose answer
    is part of the alias are left out. Aliases are written as they read mid-sentence and at its start ("Da Vinci"),
    since the floor finds the alias verbatim. ``pool`` is unused (the other builders' signature)."""
    out = []
    for target in targets:
        for alias in target.aliases:
            facts = [
                dataclasses.replace(f, prompt=f.prompt.replace(target.name, alias))
                for f in target.facts
                if target.name in f.prompt and f.answer.lower() not in alias.lower()
            ]
            if facts:
                out.append(Entity(alias, target.type, facts))
    return out
