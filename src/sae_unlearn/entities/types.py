"""Plain data types shared by every stage: an entity, its facts and the prompts built from them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Callable

from sae_unlearn.errors import UserInputError


@dataclass(frozen=True)
class Fact:
    """A completion prompt about an entity and the answer that should follow it."""

    prompt: str
    answer: str
    attribute: str = ""
    heldout: bool = False  # phrasing never seen in the world model's training corpus
    # the model completes it for made-up names too, so it tests the prompt, not the entity; set by
    # probing (metrics/answerable.py), left out of recall; never written back to an entity file
    answerable: bool = False
    # how the fact is worded (entities/phrasings.py: "cloze" trains, "question", "passing", "appositive"
    # are held out); "" in files that do not say
    phrasing: str = ""


@dataclass
class Entity:
    name: str
    type: str
    facts: list[Fact] = field(default_factory=list)
    # other names of the same entity ("Einstein", "UK"): never in any loss, asked by the alias attack
    # (entities/indirect.py ``alias_questions``) to see whether forgetting is tied to the name's tokens
    aliases: tuple[str, ...] = ()

    def to_dict(self, aliases: bool = True) -> dict:
        """``aliases=False`` for cache keys: no probe, activation or loss reads them, so adding aliases to a
        file must not retrain its SAE or re-probe it."""
        facts = [
            {k: v for k, v in asdict(f).items() if k != "answerable" and not (k == "phrasing" and not v)}
            for f in self.facts
        ]
        out: dict = {"entity": self.name, "type": self.type, "facts": facts}
        if aliases and self.aliases:
            out["aliases"] = list(self.aliases)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "Entity":
        return cls(
            name=d["entity"],
            type=d["type"],
            facts=[Fact(**f) for f in d["facts"]],
            aliases=tuple(d.get("aliases", ())),
        )


def partition_facts(entities: list[Entity], picked: Callable[[Fact], bool]) -> tuple[list[Entity], list[Entity]]:
    """(the entities without their picked facts, the entities that had picked facts holding only those); an entity
    left with no fact drops out of the first list, an unchanged one is passed through as it is."""
    rest: list[Entity] = []
    taken: list[Entity] = []
    for entity in entities:
        hit = [picked(f) for f in entity.facts]
        if not any(hit):
            rest.append(entity)
            continue
        if kept := [f for f, h in zip(entity.facts, hit) if not h]:
            rest.append(replace(entity, facts=kept))
        taken.append(replace(entity, facts=[f for f, h in zip(entity.facts, hit) if h]))
    return rest, taken


@dataclass
class EntitySplit:
    """Who is forgotten, who is protected by the retain loss, who is only watched, who is unknown.

    ``heldout_known``'s facts never enter any loss: damage to them is the honest measure of collateral
    damage (the retain set is protected by construction, so its recall flatters a method). A known entity's
    facts whose answer is a target are the target's knowledge: they sit in ``answering``, not in either set.
    """

    forget: list[Entity]
    retain: list[Entity]
    heldout_known: list[Entity]
    unknown: list[Entity]
    # the other known entities' facts whose answer is a target ("X grew up in <target>"), taken out of ``retain`` and
    # ``heldout_known``: the target's knowledge seen from another entity (entities/indirect.py ``split_off_answers``);
    # a method may forget their training phrasings, reverse questions score their held-out ones
    answering: list[Entity] = field(default_factory=list)

    def validate(self) -> None:
        if not self.forget:
            raise UserInputError(
                "The forget set is empty: name at least one known entity to forget "
                "(e.g. --forget 'Name A,Name B' or --n-forget 10)."
            )
        forget_names = {e.name for e in self.forget}
        overlap = forget_names & {e.name for e in self.retain + self.heldout_known}
        if overlap:
            raise UserInputError(
                f"Entities {sorted(overlap)} are both forget targets and retained entities; "
                "an entity cannot be forgotten and kept at once. Remove them from one of the lists."
            )
        for ent in self.forget + self.retain + self.heldout_known + self.unknown:
            check_entity_in_prompts(ent)

    @property
    def other_known(self) -> list[Entity]:
        return self.retain + self.heldout_known


def check_entity_in_prompts(entity: Entity) -> None:
    """Activations are read at the entity's last token, so the name must occur in every prompt."""
    if not entity.facts:
        raise UserInputError(f"Entity {entity.name!r} has no facts; give it at least one prompt.")
    for fact in entity.facts:
        if entity.name not in fact.prompt:
            raise UserInputError(
                f"Entity name {entity.name!r} does not occur in its prompt {fact.prompt!r}; "
                "every prompt must contain the entity name verbatim (same case)."
            )
