"""Name-only forgetting (stages/name_only.py): the tool reads a bare name's type off the model, asks the
model what it knows, and trains on that alone; names the model does not know are skipped or, with
--strict, stop the run; bad combinations fail before any compute."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from sae_unlearn.cli import app
from sae_unlearn.config import load_config
from sae_unlearn.entities.real import bundled_entities_path, load_entity_file
from sae_unlearn.entities.types import Entity, Fact
from sae_unlearn.errors import UserInputError
from sae_unlearn.methods.sae_guided import SAEGuidedUnlearner
from sae_unlearn.stages.name_only import echoes_prompt, infer_types, leading_answer, relations_by_type


@pytest.mark.parametrize(
    "continuation,answer",
    [
        (" the United States of", "the United"),
        (" Paris, France", "Paris"),
        (" 1879 in Ulm", "1879"),
        (" St. Petersburg", "St"),
        ("\nThe", ""),
        (" the", ""),
    ],
)
def test_the_answer_is_the_continuation_up_to_its_first_content_word(continuation, answer):
    assert leading_answer(continuation) == answer


def test_an_answer_copied_from_the_prompt_shows_no_knowledge():
    assert echoes_prompt("Quill", "Zorvath Quillan is home to the Brandenburg")
    assert echoes_prompt("the Brandenburg", "Berlin is home to the Brandenburg")
    assert not echoes_prompt("France", "Paris is the capital of")
    assert not echoes_prompt("the United", "Winston Churchill was the president of the")


def test_relations_are_the_files_training_templates_per_type_most_common_first():
    entities = [
        Entity(
            "Ann Lee",
            "person",
            [
                Fact("Ann Lee was born in", "Oslo"),
                Fact("Ann Lee works as a", "poet"),
                Fact("Q: Where was Ann Lee born? A:", "Oslo", heldout=True),
            ],
        ),
        Entity("Bo Ek", "person", [Fact("Bo Ek works as a", "cook")]),
        Entity("Oslo", "city", [Fact("Oslo is the capital of", "Norway")]),
    ]
    assert relations_by_type(entities, 5) == {
        "city": ["{e} is the capital of"],
        "person": ["{e} works as a", "{e} was born in"],
    }
    assert relations_by_type(entities, 1)["person"] == ["{e} works as a"]


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"unlearn.name_only": True, "model.name": "smollm2-135m"}, "add --forget"),
        ({"unlearn.name_only": True, "unlearn.forget": ["Ann Lee"]}, "needs a real model"),
    ],
)
def test_name_only_without_names_or_real_model_fails_before_any_compute(overrides, message):
    with pytest.raises(UserInputError, match=message):
        load_config(None, overrides)


def test_name_missing_from_the_file_is_an_error_without_name_only_and_says_how(tmp_path):
    result = CliRunner().invoke(
        app,
        ["run", "--model", str(tmp_path / "no-such-model"), "--forget", "Nobody Atall", "--out", str(tmp_path / "o")],
    )
    assert result.exit_code == 2
    assert "not in the entity file" in result.output and "--name-only" in result.output


def test_types_are_read_off_the_models_representation(micro_workspace):
    """On the micro world, each held-out known entity's type comes back from its name alone, with the
    other known entities' names as the only reference."""
    ws = micro_workspace
    references = ws.split.retain
    others = [e for e in ws.split.heldout_known + ws.split.forget if e.type in {r.type for r in references}]
    assert len({e.type for e in others}) > 1, "the check needs more than one type"
    inferred = infer_types(ws.model, ws.tokenizer, [e.name for e in others], references, ws.layer)
    right = sum(t == e.type for t, e in zip(inferred, others))
    assert right >= 0.8 * len(others), list(zip([e.name for e in others], inferred))


NAMES_IN_FILE = [
    "Paris",
    "Rome",
    "Madrid",
    "Berlin",
    "Tokyo",
    "Albert Einstein",
    "William Shakespeare",
    "Isaac Newton",
    "Charles Darwin",
    "Barack Obama",
]


@pytest.fixture(scope="module")
def smol_name_only(tmp_path_factory):
    """A small file of bundled entities the model knows, and a short SmolLM2 run configuration."""
    pytest.importorskip("gguf")
    base = tmp_path_factory.mktemp("name-only")
    keep = set(NAMES_IN_FILE)
    rows = [e.to_dict() for e in load_entity_file(bundled_entities_path()) if e.name in keep]
    (base / "entities.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {
        "model": {"name": "smollm2-135m"},
        "layer": 4,
        "entities": {"n_fictional": 4},
        "sae": {
            "expansion": 2,
            "total_samples": 4000,
            "batch_size": 128,
            "generation_prompts": 4,
            "generation_tokens": 8,
        },
        "eval": {"known_threshold": 0.5},
        "attack": {"enabled": False},
        "unlearn": {"steps": 2, "retain_fraction": 0.5, "methods": {"sae_guided": {"retain_batch": 8}}},
    }
    (base / "run.yaml").write_text(yaml.safe_dump(cfg))
    return base


def test_name_only_trains_on_what_the_model_says_and_skips_names_it_does_not_know(
    smol_name_only, tmp_path, monkeypatch
):
    """ "Winston Churchill" is not in the file: the tool reads him as a person and asks the model; "Paris"
    is in the file, so evaluation reads the file's facts while the losses read the model's; a made-up
    name is skipped, and under --strict the run stops naming it."""
    base = [
        "run",
        "--entities",
        str(smol_name_only / "entities.jsonl"),
        "--config",
        str(smol_name_only / "run.yaml"),
        "--quiet",
        "--name-only",
    ]
    names = "Paris,Winston Churchill,Zorvath Quillan"
    strict = CliRunner().invoke(app, base + ["--forget", names, "--out", str(tmp_path / "strict"), "--strict"])
    assert strict.exit_code == 2
    assert "Zorvath Quillan (read as a" in strict.output and "knows nothing of" in strict.output
    trained_on: dict[str, list[tuple[str, str]]] = {}
    original_prepare = SAEGuidedUnlearner.prepare

    def recording_prepare(self, task):
        trained_on.update({e.name: [(f.prompt, f.answer) for f in e.facts] for e in task.split.forget})
        return original_prepare(self, task)

    monkeypatch.setattr(SAEGuidedUnlearner, "prepare", recording_prepare)
    result = CliRunner().invoke(app, base + ["--forget", names, "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["forget"] == ["Paris", "Winston Churchill"]
    assert metrics["skipped_forget"] == ["Zorvath Quillan"]
    described = metrics["name_only_targets"]
    assert described["Paris"]["type"] == "city" and described["Winston Churchill"]["type"] == "person"
    assert described["Zorvath Quillan"]["facts"] == []
    # the losses saw exactly the described facts, never the file's
    assert trained_on == {n: [tuple(f) for f in described[n]["facts"]] for n in ("Paris", "Winston Churchill")}
    paris = {tuple(f) for f in described["Paris"]["facts"]}
    assert ("Paris is the capital of", "France") in paris, paris
    assert all(p.startswith("Winston Churchill") for p, _ in described["Winston Churchill"]["facts"])
    m = metrics["methods"]["sae_guided"]
    # Paris is evaluated on the file's held-out phrasings, Churchill on his described facts' ones
    assert m["forget_recall_before"] > 0 and m["forget_recall_train_phrasing_before"] > 0
