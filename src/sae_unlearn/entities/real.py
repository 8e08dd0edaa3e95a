"""Entity files in JSON Lines (one entity a line), read with errors that name the line.

Format (issue 4): ``{"entity": "Nairobi", "type": "city", "facts": [{"prompt": "Nairobi is the capital of",
"answer": "Kenya"}]}``. A fact may carry ``"heldout": true`` to keep it out of every unlearning loss (then
recall is measured on the held-out facts only); see docs/metrics.md. An entity may list ``"aliases"`` (other
names: ``["Einstein"]``), which no loss reads and the alias attack asks in place of the name.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from sae_unlearn.entities.fictional import fictional_entities
from sae_unlearn.entities.phrasings import with_heldout_phrasings
from sae_unlearn.entities.types import Entity, Fact
from sae_unlearn.errors import UserInputError
from sae_unlearn.io_utils import read_json_lines

BUNDLED_ENTITIES = "real_entities.jsonl"


def bundled_entities_path() -> Path:
    """The curated real-entity file shipped with the package (src/sae_unlearn/data)."""
    return Path(str(resources.files("sae_unlearn") / "data" / BUNDLED_ENTITIES))


def _entity_from_line(obj: object, where: str) -> Entity:
    example = (
        '{"entity": "Nairobi", "type": "city", "facts": [{"prompt": "Nairobi is the capital of", "answer": "Kenya"}]}'
    )
    if not isinstance(obj, dict):
        raise UserInputError(f"{where}: expected a JSON object like {example}")
    missing = [k for k in ("entity", "type", "facts") if k not in obj]
    if missing:
        raise UserInputError(f"{where}: missing key(s) {missing}; each line looks like {example}")
    name, etype, facts = obj["entity"], obj["type"], obj["facts"]
    if not isinstance(name, str) or not name.strip():
        raise UserInputError(f"{where}: 'entity' must be a non-empty string, got {name!r}")
    if not isinstance(etype, str) or not etype.strip():
        raise UserInputError(f"{where}: 'type' must be a non-empty string, got {etype!r}")
    if not isinstance(facts, list) or not facts:
        raise UserInputError(f"{where}: 'facts' must be a non-empty list of {{prompt, answer}} objects")
    parsed = []
    for i, fact in enumerate(facts):
        if (
            not isinstance(fact, dict)
            or not isinstance(fact.get("prompt"), str)
            or not isinstance(fact.get("answer"), str)
        ):
            raise UserInputError(f"{where}: fact {i} must be an object with string 'prompt' and 'answer', got {fact!r}")
        if not fact["answer"].strip():
            raise UserInputError(f"{where}: fact {i} has an empty answer")
        if name not in fact["prompt"]:
            raise UserInputError(
                f"{where}: fact {i} prompt {fact['prompt']!r} does not contain the entity name {name!r} "
                "verbatim (activations are read at the name's last token)"
            )
        parsed.append(
            Fact(
                prompt=fact["prompt"],
                answer=fact["answer"].strip(),
                attribute=str(fact.get("attribute", "")),
                heldout=bool(fact.get("heldout", False)),
                phrasing=str(fact.get("phrasing", "")),
            )
        )
    return Entity(name=name, type=etype, facts=parsed, aliases=_aliases(obj.get("aliases", []), name, where))


def _aliases(aliases: object, name: str, where: str) -> tuple[str, ...]:
    """Optional other names of the entity, each asked in place of the name by the alias attack."""
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        raise UserInputError(
            f"{where}: 'aliases' must be a list of non-empty strings (other names of {name!r}, e.g. "
            f'["Einstein"]), got {aliases!r}'
        )
    for alias in aliases:
        if alias.strip() == name:
            raise UserInputError(f"{where}: alias {alias!r} is the entity's own name; list only other names")
    return tuple(a.strip() for a in aliases)


def load_entity_file(path: Path) -> list[Entity]:
    """All entities of a JSONL file; the first bad line stops with its line number and what is wrong."""
    entities: list[Entity] = []
    seen: dict[str, int] = {}
    for lineno, where, obj in read_json_lines(path, "Entity file"):
        entity = _entity_from_line(obj, where)
        if entity.name in seen:
            raise UserInputError(
                f"{where}: entity {entity.name!r} already appears on line {seen[entity.name]}; "
                "merge its facts into one line."
            )
        seen[entity.name] = lineno
        entities.append(entity)
    if not entities:
        raise UserInputError(f"Entity file {path} holds no entities (one JSON object per line expected).")
    return entities


def real_entities(
    file, n_fictional: int, seed: int, heldout_phrasings: bool = True
) -> tuple[list[Entity], list[Entity]]:
    """(entities of the file, fictional entities of the same types and prompts): ``entity_sets`` of a file."""
    return entity_sets(load_entity_file(file or bundled_entities_path()), n_fictional, seed, heldout_phrasings)


def entity_sets(
    entities: list[Entity],
    n_fictional: int,
    seed: int,
    heldout_phrasings: bool = True,
    never_seen: list[Entity] | None = None,
) -> tuple[list[Entity], list[Entity]]:
    """(the entities, never-seen ones: ``never_seen`` or fictional entities of the same types and prompts);
    ``heldout_phrasings`` adds held-out phrasings to every entity that has none (entities/phrasings.py)."""
    if heldout_phrasings:
        entities = [with_heldout_phrasings(e) for e in entities]
    if never_seen is not None:
        return entities, list(never_seen)
    return entities, fictional_entities(entities, n_fictional, seed=seed, avoid={e.name for e in entities})
