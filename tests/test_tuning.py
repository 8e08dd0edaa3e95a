"""The validation split and the equal tuning budget (issue 23): settings are chosen on phrasings that neither a
loss nor the evaluation uses, by one rule, for every method alike."""

from __future__ import annotations

import json

import pytest
from test_refusal_baselines import byte_level_tokenizer
from typer.testing import CliRunner

from sae_unlearn.cli import app
from sae_unlearn.config import dump_config, load_config
from sae_unlearn.entities.synthetic import HELDOUT_PREFIXES, build_world
from sae_unlearn.entities.validation import ENGLISH_OPENINGS, WORLD_OPENINGS, validation_entities
from sae_unlearn.errors import UserInputError
from sae_unlearn.models.world_model import build_tokenizer
from sae_unlearn.stages.tuning import Trial, choose, tuning_grid


def _trial(value: float, gap: float, kept: float) -> Trial:
    return Trial(value=value, forget_gap=gap, retain_recall=kept, steps_run=10, seconds=1.0)


def test_the_rule_keeps_the_most_among_values_that_forget_else_forgets_most():
    # two values forget (gap within 0.05): the one keeping more of the retained entities wins
    assert choose([_trial(1, 0.30, 1.0), _trial(2, 0.04, 0.80), _trial(3, 0.00, 0.60)]) == 1
    # none forgets: the smallest gap, whatever it keeps
    assert choose([_trial(1, 0.30, 1.0), _trial(2, 0.20, 0.50), _trial(3, 0.25, 0.90)]) == 1
    # ties go to the earlier value in the grid
    assert choose([_trial(1, 0.0, 0.9), _trial(2, 0.0, 0.9)]) == 0
    assert choose([_trial(1, 0.2, 0.9), _trial(2, 0.2, 0.1)]) == 0


def test_validation_phrasings_are_neither_the_losses_nor_the_evaluations():
    world = build_world(seed=0, n_known=4, n_obscure=4, n_unknown=2)
    tok = build_tokenizer(world.all_words)
    entity = world.known[0]
    (val,) = validation_entities([entity], tok)
    train = {f.prompt for f in entity.facts if not f.heldout}
    test = {f.prompt for f in entity.facts if f.heldout}
    assert len(val.facts) == len(train)  # one per training fact
    for fact in val.facts:
        assert entity.name in fact.prompt and fact.prompt not in train | test
        assert fact.prompt.startswith(WORLD_OPENINGS)  # a word-level vocabulary writes only the world's openings
        assert not fact.prompt.startswith(HELDOUT_PREFIXES)
        assert tok.unk_token_id not in tok(fact.prompt)["input_ids"]
    assert {f.answer for f in val.facts} == {f.answer for f in entity.facts}
    # a tokenizer that writes any text gets English openings, in the form the real models' facts take
    (english,) = validation_entities([entity], byte_level_tokenizer())
    assert all(f.prompt.startswith(ENGLISH_OPENINGS) for f in english.facts)


def test_compare_tune_chooses_each_methods_setting_by_the_rule(micro_config_file, micro_workspace, tmp_path):
    out = tmp_path / "tuned"
    args = ["compare", "--synthetic", "--config", str(micro_config_file), "--out", str(out), "--steps", "20"]
    result = CliRunner().invoke(app, [*args, "--methods", "grad_diff,sae_clamp", "--tune", "--quiet"])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "compare.json").read_text())
    assert set(data["tuning"]) == {"grad_diff", "sae_clamp"}
    for name, record in data["tuning"].items():
        setting, values = tuning_grid(load_config(micro_config_file), name)
        assert record["setting"] == setting and [t["value"] for t in record["trials"]] == list(values)
        best = choose([Trial(**t) for t in record["trials"]])
        assert record["chosen"] == values[best]
        assert data["methods"][name]["steps"] == record["trials"][best]["steps_run"]  # the chosen run is evaluated
    text = (out / "compare.md").read_text()
    assert "## Chosen settings" in text and f"**{data['tuning']['grad_diff']['chosen']:g}**" in text
    refused = CliRunner().invoke(app, [*args[:-4], "--out", str(tmp_path / "x"), "--tune", "--no-sweep"])
    assert refused.exit_code == 2 and "--tune and --no-sweep contradict" in refused.output
    assert not (tmp_path / "x").exists()

    # another draw at the values this one chose: no sweep of its own, the values in its config and compare.md
    confirm = tmp_path / "confirm"
    reused = CliRunner().invoke(
        app,
        [
            *args[:4],
            "--steps",
            "20",
            "--out",
            str(confirm),
            "--seed",
            "4",  # another draw; the --seeds test's second world, so its model is cached when the whole suite runs
            "--methods",
            "grad_diff,sae_clamp",
            "--settings-from",
            str(out),
        ],
    )
    assert reused.exit_code == 0, reused.output
    again = json.loads((confirm / "compare.json").read_text())
    assert "tuning" not in again and again["seed"] == 4 and data["seed"] == 3
    chosen = {name: {r["setting"]: r["chosen"]} for name, r in data["tuning"].items()}
    assert again["settings_from"] == {"source": str(out / "compare.json"), "seed": 3, "chosen": chosen}
    run_cfg = load_config(confirm / "config.yaml")
    for name, pair in chosen.items():
        assert run_cfg.unlearn.options_for(name) | pair == run_cfg.unlearn.options_for(name)  # the value it ran at
    assert "## Settings chosen on a development draw" in (confirm / "compare.md").read_text()


def test_settings_from_refuses_what_cannot_serve_every_method(micro_config_file, micro_compare_dir, tmp_path):
    """Refused before any compute: no comparison there, one without the sweep, a method it did not tune, and
    --settings-from with --tune."""
    base = ["compare", "--synthetic", "--config", str(micro_config_file), "--quiet", "--methods", "grad_diff"]
    (tmp_path / "empty").mkdir()
    npo_only = tmp_path / "npo_only.json"
    npo_only.write_text(json.dumps({"tuning": {"npo": {"setting": "beta", "chosen": 0.1}}}))
    # a development run on another budget: its config.yaml beside its compare.json says so
    (tmp_path / "other_budget").mkdir()
    (tmp_path / "other_budget" / "compare.json").write_text(
        json.dumps({"tuning": {"grad_diff": {"setting": "lr", "chosen": 1e-5}}})
    )
    other = load_config(micro_config_file)
    other = other.model_copy(update={"unlearn": other.unlearn.model_copy(update={"steps": 99})})
    (tmp_path / "other_budget" / "config.yaml").write_text(dump_config(other))
    cases = [
        ([str(tmp_path / "empty")], "no compare.json there"),
        ([str(micro_compare_dir)], "chose no settings (it ran with --no-sweep"),
        ([str(npo_only)], "chose no setting for grad_diff"),
        ([str(tmp_path / "other_budget")], "ran another configuration (unlearn.steps: 99 vs 150)"),
        ([str(npo_only), "--tune"], "--tune and --settings-from contradict"),
    ]
    for i, (extra, message) in enumerate(cases):
        out = tmp_path / f"out{i}"
        result = CliRunner().invoke(app, [*base, "--out", str(out), "--settings-from", *extra])
        assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
        assert not out.exists()


def test_every_method_is_tuned_around_its_own_configured_value(micro_config_file):
    """The same relative budget for every method: a third of its value, the value, three times it; a value set in
    the config (the micro config's SAE-guided ``w_retain`` 3) is the middle of its grid."""
    from sae_unlearn.methods import REGISTRY
    from sae_unlearn.pipeline import SWEEPS  # the old name, kept for scripts

    cfg = load_config(micro_config_file)
    assert tuning_grid(cfg, "sae_guided") == ("w_retain", (1.0, 3.0, 9.0))
    assert SWEEPS["sae_guided"] == ("w_retain", (20.0, 60.0, 180.0))  # the shipped default, 60, in the middle
    assert SWEEPS["npo"] == ("beta", (0.0333, 0.1, 0.3))
    assert set(SWEEPS) == set(REGISTRY)  # every registered method has a tuned setting


def test_a_method_without_a_tuned_setting_is_a_clear_error(micro_config_file):
    with pytest.raises(UserInputError, match="'mine' has no tuned setting.*TUNED_SETTING"):
        tuning_grid(load_config(micro_config_file), "mine")
