"""Indirect questions (issue 24): the target as another entity's answer (reverse) and its facts asked through a
description by another entity (two-hop), built from the entity file, with a floor that swaps that other entity."""

from __future__ import annotations

import pytest
from conftest import installed

from sae_unlearn.entities.fictional import fictional_entities
from sae_unlearn.entities.indirect import reverse_questions, two_hop_questions
from sae_unlearn.entities.real import bundled_entities_path, load_entity_file
from sae_unlearn.entities.types import Entity, Fact
from sae_unlearn.metrics.recall import recall, substituted_recall
from sae_unlearn.models.builtin import BUILTIN_MODELS


def _cloze(name: str, attribute: str, answer: str) -> Fact:
    return Fact(attribute.replace("{e}", name), answer, attribute, phrasing="cloze")


PARIS = Entity(
    "Paris",
    "city",
    [
        _cloze("Paris", "{e} is the capital of", "France"),
        _cloze("Paris", "{e} is located on the continent of", "Europe"),
        _cloze("Paris", "{e}'s most famous tower is the Eiffel", "Tower"),  # a possessive: no description fits it
    ],
)
FRANCE = Entity(
    "France",
    "country",
    [
        _cloze("France", "The capital of {e} is", "Paris"),
        Fact("Q: What is the capital of France? A:", "Paris", "The capital of {e} is", True, phrasing="question"),
        _cloze("France", "{e} is a country on the continent of", "Europe"),
    ],
)
LYON = Entity("Lyon", "city", [_cloze("Lyon", "{e} is a city in the country of", "France")])  # not functional
UNESCO = Entity("UNESCO", "organisation", [_cloze("UNESCO", "{e} is headquartered in", "Paris")])


def test_questions_reach_the_target_without_naming_it():
    pool = [PARIS, FRANCE, LYON, UNESCO]
    reverse = reverse_questions([PARIS], pool)
    assert [(e.name, [(f.prompt, f.answer, f.heldout) for f in e.facts]) for e in reverse] == [
        (
            "France",
            [("The capital of France is", "Paris", False), ("Q: What is the capital of France? A:", "Paris", True)],
        ),
        ("UNESCO", [("UNESCO is headquartered in", "Paris", False)]),
    ]
    two_hop = two_hop_questions([PARIS], pool)
    asked = {e.name: [(f.prompt, f.answer) for f in e.facts] for e in two_hop}
    # the fact whose answer is the bridge ("... is the capital of" -> France through France) and the possessive
    # one are left out; Lyon's relation has many answers per bridge, so it describes nobody
    assert asked == {
        "France": [("The capital of France is located on the continent of", "Europe")],
        "UNESCO": [
            ("The city where UNESCO is headquartered is the capital of", "France"),
            ("The city where UNESCO is headquartered is located on the continent of", "Europe"),
        ],
    }
    assert all(f.heldout and f.phrasing == "two_hop" for e in two_hop for f in e.facts)
    for entity in reverse + two_hop:  # scored as the bridge's facts: the floor swaps the bridge's name
        assert all(entity.name in f.prompt and "Paris" not in f.prompt for f in entity.facts)
    # a target is never its own bridge, and a country target is reached through its capital
    assert [e.name for e in reverse_questions([FRANCE], pool)] == ["Paris", "Lyon"]
    assert two_hop_questions([FRANCE], pool)[0].facts[0].prompt == (
        "The country whose capital is Paris is a country on the continent of"
    )


SMOLLM2 = BUILTIN_MODELS["smollm2-135m"]


@pytest.mark.skipif(not installed(SMOLLM2.distribution), reason=SMOLLM2.pip_command)
def test_reverse_questions_find_what_smollm2_knows_and_the_floor_does_not():
    """The attack can see knowledge: SmolLM2 names Paris and Tokyo when asked through France and Japan on held-out
    phrasings, and does not when France and Japan are swapped for never-seen country names (the floor)."""
    from sae_unlearn.models.loading import load_causal_lm

    model, tok = load_causal_lm("smollm2-135m")
    entities = load_entity_file(bundled_entities_path())
    by_name = {e.name: e for e in entities}
    pool = [by_name[n] for n in ("France", "Japan", "Paris", "Tokyo")]
    questions = reverse_questions([by_name["Paris"], by_name["Tokyo"]], pool)
    assert [e.name for e in questions] == ["France", "Japan"]
    unknown = fictional_entities(entities, per_type=2, seed=1, avoid=set(by_name))
    known = recall(model, tok, questions, True, 4)
    floor = substituted_recall(model, tok, questions, unknown, per_target=2, max_new_tokens=4, heldout=True)
    assert known >= floor + 0.3, (known, floor)
