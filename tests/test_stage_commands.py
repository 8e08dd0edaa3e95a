"""The pipeline's stage commands one at a time, `compare --resume`, and `attack` on a run whose targets changed,
through the CLI as a user calls them (micro world; the world model and SAE come from the session's cache)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml
from conftest import MICRO
from safetensors.torch import load_file
from typer.testing import CliRunner

from sae_unlearn import runs
from sae_unlearn.cli import app
from sae_unlearn.methods.npo import NPOUnlearner
from sae_unlearn.methods.sae_guided import SAEGuidedUnlearner
from sae_unlearn.sae.loading import load_sae


def _invoke(*args: str):
    return CliRunner().invoke(app, [*args, "--quiet"] if args[0] in ("compare", "attack") else list(args))


def test_world_writes_every_entity_with_its_split_and_refuses_to_clobber(micro_config_file, micro_workspace, tmp_path):
    out = tmp_path / "world"
    result = _invoke("world", "--config", str(micro_config_file), "--out", str(out))
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "entities.jsonl").read_text().splitlines()]
    counts = {s: sum(r["split"] == s for r in rows) for s in ("known", "obscure", "unknown")}
    world, n_types = MICRO["world"], len({r["type"] for r in rows})  # the counts are per entity type
    assert n_types == 3
    assert counts == {s: n_types * world[f"n_{s}"] for s in ("known", "obscure", "unknown")}
    assert all(r["facts"] for r in rows)
    corpus = (out / "corpus.txt").read_text()
    known = [r["entity"] for r in rows if r["split"] == "known"]
    unknown = [r["entity"] for r in rows if r["split"] == "unknown"]
    assert all(name in corpus for name in known) and not any(name in corpus for name in unknown)
    assert json.loads((out / "world.json").read_text())["model_dir"] == str(micro_workspace.model_dir)
    before = (out / "entities.jsonl").read_bytes()
    again = _invoke("world", "--config", str(micro_config_file), "--out", str(out), "--seed", "4")
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert (out / "entities.jsonl").read_bytes() == before


def test_capture_saves_one_activation_per_entity_prompt_at_the_models_width(
    micro_config_file, micro_workspace, tmp_path
):
    out = tmp_path / "capture"
    result = _invoke("capture", "--config", str(micro_config_file), "--out", str(out))
    assert result.exit_code == 0, result.output
    tensors = load_file(str(out / "activations" / "activations.safetensors"))
    world = micro_workspace.world
    d_model = MICRO["world_model"]["d_model"]
    n_prompts = {split: sum(len(e.facts) for e in getattr(world, split)) for split in ("known", "unknown", "obscure")}
    for split, n in n_prompts.items():
        assert tensors[f"entity_last_{split}"].shape == (n, d_model), split
    assert tensors["all_tokens"].shape[1] == d_model and tensors["all_tokens"].shape[0] > sum(n_prompts.values())
    # known and unknown entities are told apart at the entity's last token (what the method builds on)
    gap = (tensors["entity_last_known"].mean(0) - tensors["entity_last_unknown"].mean(0)).norm()
    assert gap > 0.1 * tensors["entity_last_known"].norm(dim=1).mean(), float(gap)


def test_train_sae_writes_an_sae_lens_sae_that_reconstructs_the_layer(micro_config_file, micro_workspace, tmp_path):
    out = tmp_path / "sae"
    result = _invoke("train-sae", "--config", str(micro_config_file), "--out", str(out))
    assert result.exit_code == 0, result.output
    sae = load_sae(out / "sae")  # the loader a user's --sae goes through
    assert sae.cfg.d_in == MICRO["world_model"]["d_model"]
    assert torch.equal(sae.W_dec.detach(), micro_workspace.sae.W_dec.detach())  # the workspace's SAE, not a fresh one
    x = torch.randn(4, sae.cfg.d_in)
    assert sae.decode(sae.encode(x)).shape == x.shape


def test_select_latents_ranks_latents_by_how_they_separate_known_from_unknown(
    micro_config_file, micro_workspace, tmp_path
):
    out = tmp_path / "latents"
    result = _invoke("select-latents", "--config", str(micro_config_file), "--out", str(out))
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "latents.json").read_text())
    for kind, more, less in (("known", "f_known", "f_unknown"), ("unknown", "f_unknown", "f_known")):
        ranked = [r for r in rows if r["kind"] == kind]
        assert [r["rank"] for r in ranked] == list(range(1, len(ranked) + 1))
        assert [r["score"] for r in ranked] == sorted((r["score"] for r in ranked), reverse=True)
        assert ranked[0][more] > ranked[0][less], ranked[0]  # the top latent fires more for its own kind


@pytest.mark.parametrize("sweep", [False, True], ids=["no-sweep", "tuned"])
def test_compare_resume_skips_finished_methods_and_matches_an_uninterrupted_run(
    micro_config_file, micro_workspace, tmp_path, monkeypatch, sweep
):
    """--no-sweep: NPO crashes at step 8 after SAE-guided finished; --resume trains no SAE-guided step again,
    continues NPO from its step-5 checkpoint. Tuned (the default): NPO crashes at step 8 of its second trial after
    SAE-guided's three trials; --resume reloads NPO's first trial, continues the second from step 5 and runs the
    third. Either way SAE-guided's evaluation, saved when it finished, is not run again, and the numbers (and the
    tuning's choice) are those of a run that never stopped."""
    cfg = yaml.safe_load(micro_config_file.read_text())
    cfg["unlearn"] |= {"steps": 12, "checkpoint_every": 5}
    cfg["unlearn"]["methods"]["sae_guided"]["stop_toward"] = 0.0
    cfg["unlearn"]["methods"]["npo"] = {"stop_at_floor": False}
    cfg["attack"] = {"enabled": False}
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(cfg))
    methods = ("sae_guided", "npo")
    args = ["compare", "--config", str(config), "--methods", ",".join(methods), "--sweep" if sweep else "--no-sweep"]
    whole = _invoke(*args, "--out", str(tmp_path / "whole"))
    assert whole.exit_code == 0, whole.output

    npo_loss, guided_loss = NPOUnlearner.loss, SAEGuidedUnlearner.loss
    calls = {"sae_guided": 0, "npo": 0}
    crash_at_call = [21 if sweep else 9]  # step 8 of the second trial (after 12 calls of the first), or of the run

    def npo_counted(self, task, step, rng):
        calls["npo"] += 1
        if calls["npo"] in crash_at_call:
            raise RuntimeError("killed")
        return npo_loss(self, task, step, rng)

    def guided_counted(self, task, step, rng):
        calls["sae_guided"] += 1
        return guided_loss(self, task, step, rng)

    monkeypatch.setattr(NPOUnlearner, "loss", npo_counted)
    monkeypatch.setattr(SAEGuidedUnlearner, "loss", guided_counted)
    out = tmp_path / "killed"
    killed = _invoke(*args, "--out", str(out))
    assert isinstance(killed.exception, RuntimeError) and not (out / "compare.json").exists()
    assert calls == {"sae_guided": 36 if sweep else 12, "npo": crash_at_call[0]}
    evaluated = out / "checkpoints" / "evaluated"  # each method's numbers as soon as it is evaluated
    assert sorted(p.name for p in evaluated.iterdir()) == ["sae_guided.json"]
    trials = ["npo@beta=0.0333", "npo@beta=0.1"] if sweep else ["sae_guided", "npo"]
    assert all((out / "checkpoints" / d).is_dir() for d in trials), sorted(
        p.name for p in (out / "checkpoints").iterdir()
    )
    # the finished run's checkpoint holds its weights only; the interrupted one also its optimizer and rollback state
    (finished,) = (out / "checkpoints" / trials[0]).glob("*-done")
    (interrupted,) = (out / "checkpoints" / trials[1]).iterdir()
    kinds = [{key.split(".")[0] for key in load_file(d / "state.safetensors")} for d in (finished, interrupted)]
    assert kinds == [{"torch_rng", "param"}, {"torch_rng", "param", "snapshot", "opt"}], kinds

    crash_at_call.clear()
    calls.update(sae_guided=0, npo=0)
    evaluations: list[int] = []
    evaluate = runs.method_metrics

    def counted_evaluation(ctx, model, outcome, seconds, baseline):
        evaluations.append(outcome.steps_run)
        return evaluate(ctx, model, outcome, seconds, baseline)

    monkeypatch.setattr(runs, "method_metrics", counted_evaluation)
    resumed = _invoke(*args, "--out", str(out), "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert calls == {"sae_guided": 0, "npo": 7 + (12 if sweep else 0)}  # steps 5..11 (and the third trial)
    assert not (out / "checkpoints").exists()
    got, want = (json.loads((d / "compare.json").read_text()) for d in (out, tmp_path / "whole"))
    for name in methods:
        for key in ("forget_recall_after", "retain_recall_after", "perplexity_after", "steps"):
            assert got["methods"][name][key] == pytest.approx(want["methods"][name][key], abs=1e-6), (name, key)
    assert evaluations == [12]  # NPO's alone: SAE-guided's numbers came from its saved evaluation
    if sweep:
        for name in methods:
            assert got["tuning"][name]["chosen"] == want["tuning"][name]["chosen"]
            for point, same in zip(got["sweeps"][name], want["sweeps"][name], strict=True):
                assert point == pytest.approx(same, abs=1e-6)


def test_attack_refuses_a_run_whose_targets_are_not_the_rebuilt_ones(micro_compare_dir, tmp_path):
    """Had the entity file or model changed since the run, the attack would score other entities."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(micro_compare_dir / "config.yaml", run / "config.yaml")
    shutil.copytree(micro_compare_dir / "model_npo", run / "model_npo")
    metrics = json.loads((micro_compare_dir / "compare.json").read_text())
    metrics["forget"] = metrics["forget"][:-1] + ["Somebody Else"]
    (run / "metrics.json").write_text(json.dumps(metrics))
    out = tmp_path / "attack"
    result = _invoke("attack", "--run", str(run), "--out", str(out))
    assert result.exit_code == 2, result.output
    assert "differ from the ones rebuilt from its config" in result.output
    assert not (out / "metrics.json").exists()
