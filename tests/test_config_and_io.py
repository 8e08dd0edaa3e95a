import json
import os

import pytest

from sae_unlearn import config as config_module
from sae_unlearn.config import dump_config, load_config
from sae_unlearn.errors import UserInputError
from sae_unlearn.io_utils import atomic_save_dir, atomic_write_json, atomic_write_text, prepare_output_dir


def test_unknown_config_key_names_the_field(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("unlearn:\n  stepz: 3\n")
    with pytest.raises(UserInputError, match=r"unlearn\.stepz: unknown setting"):
        load_config(path)


def test_bad_value_names_field_value_and_rule(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("unlearn:\n  steps: -4\n")
    with pytest.raises(UserInputError, match=r"unlearn\.steps = -4: Input should be greater than or equal to 1"):
        load_config(path)


def test_malformed_yaml_is_reported(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("unlearn: [steps: 3\n")
    with pytest.raises(UserInputError, match="not valid YAML"):
        load_config(path)


def test_flags_override_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("unlearn:\n  steps: 7\n")
    assert load_config(path, {"unlearn.steps": 9}).unlearn.steps == 9


def test_lora_for_some_methods_only(tmp_path):
    """``model.lora`` as a list: an adapter for those methods, full weights for the rest (the demo keeps
    the baselines as their papers run them); a misspelt method is refused with the known names."""
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  lora: [sae_guided]\n")
    model = load_config(path).model
    assert model.lora_for("sae_guided") and not model.lora_for("npo")
    assert load_config(None, {"model.lora": True}).model.lora_for("npo")
    path.write_text("model:\n  lora: [sae_guidd]\n")
    with pytest.raises(
        UserInputError, match=r"lora lists unknown methods \['sae_guidd'\]; known methods: .*sae_guided"
    ):
        load_config(path)


def test_method_blocks_are_checked_when_the_config_loads(tmp_path, caplog):
    """``unlearn.methods.<name>``: a misspelt method (once silently ignored), a misspelt key and a value of the wrong
    type are refused before any compute; the old ``method_options`` still works, with a deprecation notice, and
    ``methods`` wins where both set a key."""
    path = tmp_path / "c.yaml"
    for block, error in [
        ("NPO:\n      beta: 0.2", r"unlearn: Unknown method 'NPO'; known methods: .*npo"),
        ("npo:\n      betta: 0.2", r"Unknown option\(s\) \['betta'\] for method 'npo'"),
        ("npo:\n      beta: high", r"Invalid option\(s\) for method 'npo': beta = 'high'"),
    ]:
        path.write_text(f"unlearn:\n  methods:\n    {block}\n")
        with pytest.raises(UserInputError, match=error):
            load_config(path)
    with pytest.raises(UserInputError, match=r"unknown method 'npp'"):
        load_config(None, {"unlearn.method": "npp"})
    path.write_text("unlearn:\n  method_options:\n    npo: {beta: 0.3, lr: 0.01}\n  methods:\n    npo: {lr: 0.001}\n")
    config_module._warned.clear()  # said once per process: another test may have said it already
    with caplog.at_level("WARNING", logger="sae_unlearn"):
        cfg = load_config(path)
    assert cfg.unlearn.options_for("npo") == {"beta": 0.3, "lr": 0.001}
    assert "method_options is deprecated" in caplog.text


def test_deep_preset_is_the_demo_plus_its_three_settings():
    """smollm2_deep.yaml is documented as the demo config plus three settings (and without the demo's
    ``w_answer`` and lead-ins, not measured with them): any other drift between the
    two files (a setting changed in one and not the other) would silently change what the preset measures."""
    from sae_unlearn.cli import DEMO_REAL_CONFIG

    def flat(tree, prefix=""):
        out = {}
        for key, value in tree.items():
            out |= flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value}
        return out

    demo = flat(load_config(DEMO_REAL_CONFIG).model_dump(mode="json"))
    deep = flat(load_config(DEMO_REAL_CONFIG.with_name("smollm2_deep.yaml")).model_dump(mode="json"))
    changed = {k: (demo[k], deep[k]) for k in demo.keys() & deep.keys() if demo[k] != deep[k]}
    deep_only = {k: deep[k] for k in deep.keys() - demo.keys()}
    demo_only = {k: demo[k] for k in demo.keys() - deep.keys()}
    block = "unlearn.methods.sae_guided."
    assert changed == {
        block + "w_downstream": (0.0, 0.3),
        block + "w_kl": (1.0, 5.0),
        block + "w_answer": (0.5, 0.0),
        block + "retain_positions": ("after_entity", "all"),  # the deep preset was measured with "all"
        block + "forget_batch": (24, 48),  # without lead-ins: every forget prompt in each step (48 >= the 24)
    }
    assert deep_only == {block + "retain_paired": True}
    assert demo_only == {block + "lead_ins": 2}  # the deep preset was measured without lead-ins


def test_the_old_flat_sae_guided_keys_are_read_into_their_block_with_a_notice(tmp_path, caplog):
    """``unlearn.w_retain`` and the other SAE-guided keys that sat under ``unlearn`` until 2026-12 are public
    keys: they still work (into ``unlearn.methods.sae_guided``) with a notice naming the new place; one
    setting given in both places is refused; a bad value is caught as in the block."""
    path = tmp_path / "c.yaml"
    path.write_text("unlearn:\n  w_retain: 7\n  lr: 0.01\n  methods:\n    sae_guided: {w_kl: 2}\n")
    config_module._warned.clear()
    with caplog.at_level("WARNING", logger="sae_unlearn"):
        cfg = load_config(path, {"unlearn.forget_batch": 8})
    assert cfg.unlearn.options_for("sae_guided") == {"w_retain": 7, "lr": 0.01, "forget_batch": 8, "w_kl": 2}
    assert "now live under unlearn.methods.sae_guided" in caplog.text and "w_retain" in caplog.text
    path.write_text("unlearn:\n  w_retain: 7\n  methods:\n    sae_guided: {w_retain: 9}\n")
    with pytest.raises(UserInputError, match=r"w_retain set both as unlearn.w_retain and as unlearn.methods"):
        load_config(path)
    with pytest.raises(UserInputError, match=r"Invalid option\(s\) for method 'sae_guided': retain_positions"):
        load_config(None, {"unlearn.retain_positions": "everywhere"})
    for key, value in (("lead_ins", 9), ("w_retain", -1.0), ("forget_batch", 0)):  # the old keys' bounds hold
        with pytest.raises(UserInputError, match=rf"for method 'sae_guided': {key} = {value}"):
            load_config(None, {f"unlearn.methods.sae_guided.{key}": value})


def test_a_runs_config_file_writes_out_every_methods_settings_and_reads_back_the_same(tmp_path):
    """config.yaml holds each method's defaults too, so a later release's new defaults cannot change a re-run;
    reading it back gives the very settings the run used."""
    from sae_unlearn.methods import REGISTRY, method_settings

    cfg = load_config(None, {"unlearn.methods.npo.beta": 0.3, "unlearn.w_retain": 5.0})
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(cfg))
    again = load_config(path)
    assert set(again.unlearn.methods) == set(REGISTRY)
    for name in REGISTRY:
        assert method_settings(name, again.unlearn.options_for(name)) == method_settings(
            name, cfg.unlearn.options_for(name)
        )
    assert again.unlearn.methods["npo"]["beta"] == 0.3 and again.unlearn.methods["sae_guided"]["w_retain"] == 5.0
    assert again.unlearn.methods["sae_guided"]["w_toward"] == 1.0  # a default, written out


def test_existing_output_dir_is_refused_and_kept(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(UserInputError, match="--overwrite"):
        prepare_output_dir(out, overwrite=False)
    assert (out / "precious.txt").read_text() == "keep me"
    prepare_output_dir(out, overwrite=True)
    assert not (out / "precious.txt").exists()


def test_failed_write_keeps_the_previous_file_and_leaves_no_temp_file(tmp_path):
    """A write that dies half way (here: text that cannot be encoded, after a valid start) must leave the
    last good file as it was: a plain ``open(path, "w")`` would already have truncated it."""
    path = tmp_path / "m.json"
    atomic_write_json(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    with pytest.raises(UnicodeEncodeError):
        atomic_write_text(path, '{"a": 2, "b": "' + "x" * 10_000 + "\ud800" + '"}')
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["m.json"]


def test_failed_directory_save_keeps_the_previous_directory(tmp_path):
    """A writer that crashes after writing part of a directory (a checkpoint, a model) must leave the
    previous directory whole and no temp directory beside it."""
    target = tmp_path / "ckpt"
    atomic_save_dir(target, lambda d: (d / "weights.bin").write_bytes(b"old"))

    def crash_half_way(d):
        (d / "weights.bin").write_bytes(b"new, partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_save_dir(target, crash_half_way)
    assert os.listdir(tmp_path) == ["ckpt"]
    assert os.listdir(target) == ["weights.bin"] and (target / "weights.bin").read_bytes() == b"old"
