"""Held-out phrasings (entities/phrasings.py) and targets known in part: what makes real-model recall honest."""

from __future__ import annotations

import json
import random

import pytest
from typer.testing import CliRunner

from sae_unlearn.attacks.relearn import split_for_relearning
from sae_unlearn.cli import app
from sae_unlearn.config import DemoConfig
from sae_unlearn.entities.phrasings import HELDOUT_PHRASINGS, QUESTION_EXAMPLE, question_prompt, with_heldout_phrasings
from sae_unlearn.entities.real import bundled_entities_path, load_entity_file
from sae_unlearn.entities.types import Entity, Fact
from sae_unlearn.errors import UserInputError
from sae_unlearn.stages.split import _forget_targets
from sae_unlearn.state import Probing, Subject, Workspace


@pytest.fixture(scope="module")
def bundled() -> list[Entity]:
    return load_entity_file(bundled_entities_path())


def test_every_bundled_fact_comes_in_three_heldout_phrasings(bundled):
    """Recall reads held-out phrasings on real models: each training fact needs its question, passing
    mention and aside, naming the entity verbatim (activations are read at its last token)."""
    for entity in bundled:
        train = [f for f in entity.facts if not f.heldout]
        assert train and all(f.phrasing == "cloze" for f in train), entity.name
        for fact in train:
            same = [f for f in entity.facts if f.attribute == fact.attribute and f.heldout]
            assert sorted(f.phrasing for f in same) == sorted(HELDOUT_PHRASINGS), (entity.name, fact.prompt)
            assert all(f.answer == fact.answer and entity.name in f.prompt and f.prompt != fact.prompt for f in same)


def test_bundled_file_is_what_the_generator_writes(bundled):
    """The file's held-out phrasings are the generator's: regenerate with `sae-unlearn phrasings`
    after editing the cloze facts, never by hand in one place only."""
    for entity in random.Random(0).sample(bundled, 50):
        cloze = Entity(entity.name, entity.type, [Fact(f.prompt, f.answer) for f in entity.facts if not f.heldout])
        assert with_heldout_phrasings(cloze).facts == entity.facts, entity.name


@pytest.mark.parametrize(
    "name,prompt,question",
    [
        ("Kabul", "Kabul is the capital of", "Q: Which country has Kabul as its capital city? A:"),
        ("Congo", "The capital of the Congo is", "Q: What is the capital city of the Congo? A:"),
        ("Peru", "The capital of Peru is", "Q: What is the capital city of Peru? A:"),
        ("Japan", "The currency of Japan is the", "Q: What is the name of the currency of Japan? A: The"),
        ("London", "London is the capital of the", "Q: Which country has London as its capital city? A: The"),
        ("Leo Tolstoy", "Leo Tolstoy was a writer from", "Q: Where was the writer Leo Tolstoy from? A:"),
        ("Toyota", "Toyota is a car company from", "Q: Where is the car company Toyota from? A:"),
        (
            "Euclid",
            "Euclid is known as the father of",
            'Q: How does this sentence about Euclid end: "Euclid is known as the father of ..."? A:',
        ),
    ],
)
def test_question_phrasing(name, prompt, question):
    assert question_prompt(name, prompt) == QUESTION_EXAMPLE + question


def test_files_with_heldout_facts_are_left_as_written():
    mine = Entity(
        "Alden Voss",
        "person",
        [Fact("Alden Voss works as a", "painter"), Fact("Q: What is Alden Voss's job? A:", "painter", heldout=True)],
    )
    assert with_heldout_phrasings(mine) is mine


def test_relearning_never_teaches_one_phrasing_and_asks_another(bundled):
    """All phrasings of a fact share its relation, so the attack's taught and asked halves share no fact."""
    for entity in bundled[:100]:
        parts = split_for_relearning(entity)
        if parts is None:
            continue
        taught, asked = parts
        assert not {f.answer + f.attribute for f in taught.facts} & {f.answer + f.attribute for f in asked.facts}


def test_phrasings_command_writes_a_loadable_file_and_refuses_to_clobber(tmp_path):
    src = tmp_path / "mine.jsonl"
    src.write_text(
        json.dumps(
            {"entity": "Nairobi", "type": "city", "facts": [{"prompt": "Nairobi is the capital of", "answer": "Kenya"}]}
        )
        + "\n"
    )
    out = tmp_path / "with_phrasings.jsonl"
    result = CliRunner().invoke(app, ["phrasings", "--entities", str(src), "--out", str(out)])
    assert result.exit_code == 0, result.output
    (entity,) = load_entity_file(out)
    assert [f.phrasing for f in entity.facts] == ["cloze", *HELDOUT_PHRASINGS]
    before = out.read_text()
    again = CliRunner().invoke(app, ["phrasings", "--entities", str(src), "--out", str(out)])
    assert again.exit_code == 2 and "--overwrite" in again.output and out.read_text() == before


def _workspace(probing: dict[str, float], forget: list[str], strict: bool = False) -> Workspace:
    entities = [Entity(n, "person", [Fact(f"{n} works as a", "x"), Fact(f"{n} lives in", "y")]) for n in probing]
    cfg = DemoConfig.model_validate(
        {"model": {"name": "some-model"}, "unlearn": {"forget": forget}, "entities": {"strict": strict}}
    )
    # no model is needed to choose targets from probing shares
    subject = Subject(cfg=cfg, model_dir=None, model=None, tokenizer=None, layer=0, entities=entities, never_seen=[])
    return Workspace(subject, probing_record=Probing(probing, entities))


def test_a_target_known_in_part_is_forgotten_not_skipped():
    """Issue 21: a user who asks to forget a name the model knows half of wants that half gone."""
    ws = _workspace({"Ann Lee": 1.0, "Bo Ray": 0.5, "Cy Dunn": 0.0}, ["Ann Lee", "Bo Ray", "Cy Dunn"])
    known = [e for e in ws.candidates if ws.probing[e.name] >= 0.9]
    targets, skipped = _forget_targets(ws, known, random.Random(0))
    assert [e.name for e in targets] == ["Ann Lee", "Bo Ray"]
    assert skipped == ["Cy Dunn"]


def test_a_target_known_of_nothing_stops_under_strict():
    ws = _workspace({"Ann Lee": 1.0, "Cy Dunn": 0.0}, ["Ann Lee", "Cy Dunn"], strict=True)
    with pytest.raises(UserInputError, match="Cy Dunn.*nothing to forget"):
        _forget_targets(ws, ws.candidates[:1], random.Random(0))
