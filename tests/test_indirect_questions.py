"""Indirect questions (issue 24): the target as another entity's answer (reverse), its facts asked through a
description by another entity (two-hop) or with another of its names (alias), built from the entity file, with a
floor that swaps that other entity or name for a never-seen one."""

from __future__ import annotations

import pytest
from conftest import installed

from sae_unlearn.entities.fictional import fictional_entities
from sae_unlearn.entities.indirect import alias_questions, reverse_questions, split_off_answers, two_hop_questions
from sae_unlearn.entities.real import bundled_entities_path, load_entity_file
from sae_unlearn.entities.synthetic import LINKS, build_world
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


def test_aliases_ask_the_targets_facts_under_another_name():
    """Every phrasing keeps its held-out flag; a fact whose answer is part of the alias is not asked (the alias
    would give it away); an entity without aliases asks nothing."""
    uk = Entity(
        "United Kingdom",
        "country",
        [
            _cloze("United Kingdom", "The capital of the {e} is", "London"),
            Fact("Q: Which language is spoken in the United Kingdom? A:", "English", "", True, phrasing="question"),
            _cloze("United Kingdom", "The {e} is often shortened to", "UK"),
        ],
        aliases=("UK",),
    )
    asked = alias_questions([uk, FRANCE], [])
    assert [(e.name, e.type) for e in asked] == [("UK", "country")]
    assert [(f.prompt, f.answer, f.heldout, f.phrasing) for f in asked[0].facts] == [
        ("The capital of the UK is", "London", False, "cloze"),
        ("Q: Which language is spoken in the UK? A:", "English", True, "question"),
    ]


@pytest.mark.skipif(not installed(BUILTIN_MODELS["smollm2-135m"].distribution), reason="SmolLM2 not installed")
def test_aliases_in_the_bundled_file_reach_what_smollm2_knows():
    """The attack can see knowledge: asked "Churchill", "Newton", "UK", ... on held-out phrasings, SmolLM2 gives
    facts that the same questions about never-seen names do not get (measured 0.356 vs 0.144 on these six)."""
    from sae_unlearn.models.loading import load_causal_lm

    model, tok = load_causal_lm("smollm2-135m")
    entities = load_entity_file(bundled_entities_path())
    by_name = {e.name: e for e in entities}
    names = ("Winston Churchill", "Isaac Newton", "Charles Darwin", "Pablo Picasso", "United Kingdom", "Coca-Cola")
    questions = alias_questions([by_name[n] for n in names], [])
    assert [e.name for e in questions] == ["Churchill", "Newton", "Darwin", "Picasso", "UK", "Coke"]
    unknown = fictional_entities(entities, per_type=2, seed=1, avoid=set(by_name))
    known = recall(model, tok, questions, True, 4)
    floor = substituted_recall(model, tok, questions, unknown, per_target=2, max_new_tokens=4, heldout=True)
    assert known >= floor + 0.1, (known, floor)


def test_a_fact_answered_by_a_target_leaves_the_retain_set():
    """Keeping "The capital of France is -> Paris" in a retain loss would ask a method to keep what it must forget
    about Paris, and scoring it as a held-out known fact would count forgetting Paris as collateral damage: the
    split moves such facts out (they stay reverse questions, built from the whole probed pool)."""
    kept, answering = split_off_answers([FRANCE, LYON, UNESCO, PARIS], [PARIS])
    assert [(e.name, [f.answer for f in e.facts]) for e in kept] == [
        ("France", ["Europe"]),  # its other facts stay
        ("Lyon", ["France"]),
        ("Paris", ["France", "Europe", "Tower"]),
    ]  # UNESCO had only the fact that names Paris: it leaves the retain set
    assert [(e.name, [f.prompt for f in e.facts]) for e in answering] == [
        ("France", ["The capital of France is", "Q: What is the capital of France? A:"]),
        ("UNESCO", ["UNESCO is headquartered in"]),
    ]
    assert split_off_answers([FRANCE, LYON], [UNESCO]) == ([FRANCE, LYON], [])  # nothing answers UNESCO


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


def _strip_links(world) -> list[tuple[str, list[Fact]]]:
    return [
        (e.name, [f for f in e.facts if f.attribute not in LINKS.get(e.type, {})])
        for e in world.known + world.obscure + world.unknown
    ]


def test_a_linked_world_adds_hometowns_and_changes_nothing_else():
    """``world.links``: every person's hometown is a known city (trained for known persons only), drawn apart from
    the rest of the world, so the world without links is the world it always was."""
    plain, linked = build_world(seed=5), build_world(seed=5, links=True)
    assert _strip_links(plain) == _strip_links(linked)
    assert set(plain.corpus) < set(linked.corpus)
    cities = {e.name for e in linked.known if e.type == "city"}
    extra = set(linked.corpus) - set(plain.corpus)
    for group in (linked.known, linked.obscure, linked.unknown):
        for person in (e for e in group if e.type == "person"):
            (town,) = {f.answer for f in person.facts if f.attribute == "hometown"}
            assert town in cities
            assert any(f.heldout for f in person.facts if f.attribute == "hometown")
            in_corpus = {line for line in extra if person.name in line}
            assert bool(in_corpus) == (group is linked.known)  # only known persons' hometowns are trained
    # a forgotten city is the answer of its residents' hometown facts: reverse questions, never naming it
    city = next(e for e in linked.known if e.type == "city" and any(town_of(p) == e.name for p in linked.known))
    asked = reverse_questions([city], linked.known)
    assert asked and all(f.answer == city.name and city.name not in f.prompt for e in asked for f in e.facts)
    assert {e.name for e in asked} == {p.name for p in linked.known if town_of(p) == city.name}
    assert not two_hop_questions([city], linked.known)  # the world model never saw a description of a city


def town_of(person: Entity) -> str | None:
    return next((f.answer for f in person.facts if f.attribute == "hometown"), None)


@pytest.fixture(scope="module")
def linked_micro(micro_config_file, tmp_path_factory):
    """The micro world with links, through the real pipeline, forgetting the first city that is two known persons'
    hometown (6 held-out reverse questions: with one resident's 3, a single question decided the reverse-facts bar,
    and the CPU's instruction set flipped it; docs/testing.md): (workspace, the original model's metrics)."""
    import yaml

    from sae_unlearn.config import load_config
    from sae_unlearn.evaluation.evaluate import evaluate_original
    from sae_unlearn.stages.latents import select_latents
    from sae_unlearn.stages.sae import get_sae
    from sae_unlearn.stages.split import make_split
    from sae_unlearn.stages.subject import build_synthetic

    data = yaml.safe_load(micro_config_file.read_text())
    data["world"] |= {"links": True}
    data["attack"] = {"relearn_steps": 0}  # the indirect questions are an attack: on, but no relearning
    path = tmp_path_factory.mktemp("linked") / "linked.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = load_config(path)
    world = build_world(**cfg.world.model_dump())
    city = next(e for e in world.known if e.type == "city" and sum(town_of(p) == e.name for p in world.known) >= 2)
    cfg = cfg.model_copy(update={"unlearn": cfg.unlearn.model_copy(update={"forget": [city.name]})})
    ws = select_latents(make_split(get_sae(build_synthetic(cfg, progress=False), progress=False)))
    return ws, evaluate_original(ws.evaluation)[0]


def test_reverse_questions_on_a_linked_world_reach_the_target(linked_micro):
    """The micro world with links: its model names a city target from its residents' held-out hometown questions
    well above the floor (a never-seen person's hometown), so the attack has something to find; the keys and their
    floor are written. The residents' hometown facts left the retain and held-out known sets (``answering``)."""
    ws, metrics = linked_micro
    assert metrics["forget_reverse_questions"] >= 1
    assert metrics["forget_reverse_recall"] >= metrics["unknown_reverse_recall_same_prompts"] + 0.3, metrics
    (city,) = ws.split.forget
    assert ws.split.answering and all(f.answer == city.name for e in ws.split.answering for f in e.facts)
    kept = ws.split.retain + ws.split.heldout_known
    assert not any(f.answer == city.name for e in kept for f in e.facts)


def test_reverse_facts_make_sae_guided_forget_the_target_as_an_answer(linked_micro):
    """``unlearn.reverse_facts``: SAE-guided moves what the model reads at the target's name, and a question that
    ends where the target would be said never reads it, so without the residents' hometown facts in the loss the
    reverse questions keep their answer; with them (aligned at the last position to the same prompt with a
    stranger as the resident) the held-out reverse questions fall toward their floor. Measured with the mean of
    strangers as the reference (the default when reverse_facts came in); with one stranger per target (the default
    since session 44) this micro world's single city target is no longer its residents' answer either way
    (reverse recall 0.0 with and without the facts, 2026-12-07), so the contrast is measured where it exists."""
    from sae_unlearn.evaluation.evaluate import evaluate_state
    from sae_unlearn.stages.unlearn import run_method

    ws, before = linked_micro
    reverse = {}
    for on in (False, True):
        unlearn = ws.cfg.unlearn.model_copy(update={"reverse_facts": on})
        cfg = ws.cfg.model_copy(update={"unlearn": unlearn})
        model, _, _ = run_method(ws.with_config(cfg), "sae_guided", False, extra_options={"reference": "mean"})
        reverse[on] = evaluate_state(ws.evaluation, model)["forget_reverse_recall"]
    print(before["forget_reverse_recall"], before["unknown_reverse_recall_same_prompts"], reverse)
    assert reverse[True] <= reverse[False] - 0.3, reverse
