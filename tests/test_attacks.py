"""Attacks (relearning, probes, paraphrase, free generation), `sae-unlearn attack`, and report.html
rendered in headless Chromium."""

import copy
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sae_unlearn.attacks.paraphrase import heldout_facts, mentions, question_prompts
from sae_unlearn.attacks.probes import FactRows, attribute_probe_accuracy
from sae_unlearn.attacks.quantization import quantized_copy, round_to_nearest
from sae_unlearn.attacks.readout import readout_copy, same_above
from sae_unlearn.attacks.relearn import floor_entities, relearn_attack, split_for_relearning
from sae_unlearn.cli import app
from sae_unlearn.entities.types import Entity, Fact
from sae_unlearn.evaluation.readout import readout_recall
from sae_unlearn.metrics.recall import recall
from sae_unlearn.models.layers import decoder_layers
from sae_unlearn.models.prompts import fact_prompts, name_tokens
from sae_unlearn.runs import ALL_METHODS
from sae_unlearn.stages.unlearn import run_method

ATTACK_KEYS = (
    "relearn_recall",
    "relearn_recall_unknown",
    "relearn_recall_original",
    "relearn_recall_best",
    "relearn_recall_unknown_best",
    "relearn_recall_original_best",
    "relearn_recovery",
    "forget_probe_auc_after",
    "forget_probe_auc_residual_after",
    "attribute_probe_acc_forget_after",
    "paraphrase_recall_heldout_after",
    "paraphrase_recall_context_after",
    "generation_leak_rate_after",
    "forget_recall_quant8_after",
    "forget_recall_quant4_after",
    "forget_recall_readout_after",
)


def _entity(name: str, relations: int, per_relation: int = 1) -> Entity:
    facts = [
        Fact(f"{name} r{r} p{p}", f"a{r}", attribute=f"r{r}") for r in range(relations) for p in range(per_relation)
    ]
    return Entity(name, "person", facts)


def test_relearning_split_holds_back_whole_relations():
    attack, held = split_for_relearning(_entity("Ann Bo", 3, per_relation=2))
    assert {f.attribute for f in attack.facts} == {"r0"}
    assert {f.attribute for f in held.facts} == {"r1", "r2"}  # no phrasing of a taught fact is asked
    assert split_for_relearning(_entity("Cy Do", 1, per_relation=3)) is None


def test_relearning_relations_without_attribute_come_from_the_prompt():
    e = Entity("Paris", "city", [Fact("Paris is the capital of", "France"), Fact("Paris lies on the river", "Seine")])
    attack, held = split_for_relearning(e)
    assert [f.answer for f in attack.facts] == ["France"] and [f.answer for f in held.facts] == ["Seine"]


def test_floor_entities_match_types_one_each():
    targets = [Entity("T1", "city", []), Entity("T2", "person", [])]
    unknown = [Entity("U1", "person", []), Entity("U2", "city", []), Entity("U3", "city", [])]
    assert [u.name for u in floor_entities(targets, unknown)] == ["U2", "U1"]


def test_attribute_probe_reads_linear_codes_and_not_noise():
    rng = np.random.default_rng(0)
    means = rng.normal(size=(3, 16)) * 3

    def rows(n, informative=True):
        labels = rng.integers(0, 3, n)
        x = (means[labels] if informative else 0) + rng.normal(size=(n, 16))
        return FactRows(x, ["{e} likes"] * n, [f"c{i}" for i in labels])

    acc = attribute_probe_accuracy(rows(90), {"encoded": rows(60), "noise": rows(60, informative=False)})
    assert acc["encoded"] > 0.9
    assert acc["noise"] < 0.6
    assert 0.2 < acc["encoded_majority"] < 0.5  # three balanced answers: guessing the commonest one is ~1/3
    skewed = FactRows(rng.normal(size=(20, 4)), ["{e} continent"] * 20, ["europe"] * 16 + ["asia"] * 4)
    assert attribute_probe_accuracy(skewed, {"t": skewed})["t_majority"] == 0.8  # a probe must beat this
    unique = FactRows(rng.normal(size=(20, 4)), ["{e} capital"] * 20, [f"city{i}" for i in range(20)])
    assert np.isnan(attribute_probe_accuracy(unique, {"t": unique})["t"])  # every answer unique: not probed


def test_paraphrase_helpers():
    assert mentions("The city is in France, of course", "france")
    assert not mentions("Francesca is here", "France")  # whole words only
    e = Entity("Paris", "city", [Fact("Paris is the capital of", "France")])
    held = heldout_facts([e])
    assert len(held) == 3 and all(f.prompt.endswith("Paris is the capital of") and f.heldout for _, f in held)

    class Chat:
        chat_template = "x"

        def apply_chat_template(self, messages, tokenize, add_generation_prompt):
            return f"<user>{messages[0]['content']}<assistant>"

    assert question_prompts(Chat(), held[:1])[0].startswith("<user>Complete the sentence")
    assert question_prompts(object(), held[:1])[0].startswith("Question: ")


def test_relearning_brings_back_suppressed_knowledge_but_not_unknown_entities(micro_workspace):
    ws = micro_workspace
    rmu_model, _, _ = run_method(ws, "rmu", progress=False, extra_options={"stop_at_floor": False})  # fully muted
    kwargs = dict(steps=20, lr=1e-4, eval_every=5, heldout=True, max_new_tokens=4, seed=0)
    suppressed = relearn_attack(rmu_model, ws.tokenizer, ws.split.forget, **kwargs)
    floor = relearn_attack(ws.model, ws.tokenizer, floor_entities(ws.split.forget, ws.unknown_eval), **kwargs)
    original = relearn_attack(ws.model, ws.tokenizer, ws.split.forget, **kwargs)
    # measured 2026-12-05 (RMU at the reference's layer and parameters, 150 steps): 0.125 -> 0.417; 0.083 -> 0.333
    # (6 of 24 facts back, 0.375 at step 15) with the packages and CPU of session 32 (docs/testing.md)
    assert suppressed.recall_before < 0.3  # RMU muted the held-back facts ...
    assert suppressed.recall_after >= suppressed.recall_before + 0.25  # ... and 20 steps on other facts bring them back
    assert floor.recall_after < 0.2  # teaching one attribute of a never-seen entity does not reveal the others
    assert original.recall_after > 0.8  # the attack's learning rate does not wreck a healthy model
    assert [p["step"] for p in suppressed.curve] == [0, 5, 10, 15, 20]
    before = [p.detach().clone() for p in rmu_model.parameters()]
    relearn_attack(rmu_model, ws.tokenizer, ws.split.forget, **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(before, rmu_model.parameters()))  # the attack works on a copy


def _scrambled(model, blocks: range, seed: int = 0):
    """A copy of ``model`` with the weights of ``blocks`` redrawn, at 30 times their spread so that their output
    drowns the residual stream that bypasses them: whatever reached the output through those blocks is gone."""
    out = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for i in blocks:
            for p in decoder_layers(out)[i].parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 30 * p.std().clamp_min(1e-3))
    return out


def test_readout_reads_the_facts_that_upper_layers_hide(micro_workspace):
    """Blocks above the SAE's layer that hide the answers (here: redrawn, the model recalls nothing) leave the
    facts in the layer-L representation, and the original upper blocks read all of them back; a representation
    that lost them (blocks up to L redrawn) gives the stitch nothing. The original model's own value is its recall."""
    ws = micro_workspace
    ctx, n_blocks = ws.evaluation, len(decoder_layers(ws.model))
    assert ws.layer + 1 < n_blocks  # the micro world has blocks above its SAE's layer

    def forget_recall(model) -> float:
        return recall(model, ws.tokenizer, ws.split.forget, ws.eval_heldout, ws.cfg.eval.max_new_tokens)

    original = forget_recall(ws.model)
    hidden = _scrambled(ws.model, range(ws.layer + 1, n_blocks))
    erased = _scrambled(ws.model, range(ws.layer + 1))
    assert original > 0.8 and forget_recall(hidden) < 0.2
    assert readout_recall(ctx, hidden, False)["forget_recall_readout"] == original
    assert readout_recall(ctx, erased, False)["forget_recall_readout"] < 0.2
    assert readout_recall(ctx, ws.model, True)["forget_recall_readout"] == original
    # only the upper blocks decide whether a stitch is needed: lower-only edits are read as they are
    assert same_above(ws.model, erased, ws.layer) and not same_above(ws.model, hidden, ws.layer)
    stitched = readout_copy(ws.model, hidden, ws.layer)
    for i, (a, b) in enumerate(zip(decoder_layers(stitched), decoder_layers(ws.model))):
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters())), i  # hidden's lower = original
    assert not any(p is q for p, q in zip(stitched.parameters(), hidden.parameters()))  # copies: nothing shared
    # the input embeddings are below L too: names whose rows were redrawn are read as redrawn, through the
    # original head (the micro model ties it to the embeddings)
    renamed = copy.deepcopy(hidden)
    prompts, names, _ = fact_prompts(ws.split.forget)
    rows = sorted(name_tokens(ws.tokenizer, prompts, names)[0])
    with torch.no_grad():
        weight = renamed.get_input_embeddings().weight
        weight[rows] = torch.randn(len(rows), weight.shape[1], generator=torch.Generator().manual_seed(0))
    assert readout_recall(ctx, renamed, False)["forget_recall_readout"] < 0.2
    stitched = readout_copy(ws.model, renamed, ws.layer)
    assert torch.equal(stitched.get_input_embeddings().weight, weight)
    assert torch.equal(stitched.get_output_embeddings().weight, ws.model.get_output_embeddings().weight)


def test_a_relearning_rate_that_wrecks_the_original_model_is_called_out(micro_workspace, caplog):
    """On Gemma-3-270M the default rate took the original model's own held-back facts from 0.524 to 0.000 in 10
    steps, so every method "resisted" relearning; a rate that damages the ceiling now says so and what to set."""
    from sae_unlearn.attacks.suite import relearn_floors

    ws = micro_workspace
    wreck = ws.cfg.attack.model_copy(update={"relearn_lr": 1.0, "relearn_steps": 5, "relearn_eval_every": 5})
    with caplog.at_level("WARNING", logger="sae_unlearn"):
        floors = relearn_floors(ws.with_config(ws.cfg.model_copy(update={"attack": wreck})).evaluation)
    curve = floors["relearn_curve_original"]
    assert curve[-1]["recall"] < curve[0]["recall"] - 0.1, curve
    assert "damages the original model" in caplog.text and "attack.relearn_lr" in caplog.text
    # what the damaging attack brought back on its way still counts: the best evaluated step, not the last
    assert floors["relearn_recall_original_best"] == max(p["recall"] for p in curve) > floors["relearn_recall_original"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="sae_unlearn"):
        relearn_floors(ws.evaluation)  # the default rate keeps the micro model's facts (test above): no warning
    assert "damages the original model" not in caplog.text


def test_compare_reports_every_attack_for_every_method(micro_compare_dir):
    data = json.loads((micro_compare_dir / "compare.json").read_text())
    for name in ALL_METHODS:
        m = data["methods"][name]
        for key in ATTACK_KEYS:
            assert isinstance(m[key], float) and m[key] == m[key], (name, key)
        assert m["relearn_curve"][0]["step"] == 0 and m["relearn_curve"][-1]["step"] == 20
        assert m["relearn_recall_best"] == max(p["recall"] for p in m["relearn_curve"]) >= m["relearn_recall"]
        assert m["generation_samples_after"] and m["generation_samples_unknown"]
    gd = data["methods"]["grad_diff"]
    assert gd["relearn_recall_original"] > gd["relearn_recall_unknown"] + 0.5  # ceiling and floor far apart
    report = (micro_compare_dir / "report.md").read_text()
    assert "## Attacks: is the knowledge gone or only muted?" in report and "relearn.png" in report


def test_the_report_gives_each_attack_its_panel(micro_compare_dir):
    """One section per attack, in the registry's order, each with its question, its rows and a plot that exists;
    every attack row of the registry belongs to a registered attack."""
    from sae_unlearn.metrics.registry import ATTACKS, REGISTRY

    assert {m.attack for m in REGISTRY.values() if m.section == "attacks"} == set(ATTACKS)
    report = (micro_compare_dir / "report.md").read_text()
    panels = report.split("## Attacks: is the knowledge gone or only muted?")[1].split("\n## ")[0].split("\n### ")[1:]
    # the QA file's rows come only with `evaluate --qa`; the synthetic world links no entity to another, so it
    # has no indirect questions (tests/test_real_models.py checks that panel on a real-format run)
    shown = [a for a in ATTACKS if a not in ("QA file", "indirect questions")]
    assert [p.splitlines()[0] for p in panels] == [a[:1].upper() + a[1:] for a in shown]
    for panel, attack in zip(panels, shown):
        question = ATTACKS[attack]
        assert f"*{question}*" in panel
        rows = [line for line in panel.splitlines() if line.startswith("| ") and not line.startswith("| metric")]
        assert rows, attack
        (plot,) = [line.split("](")[1].rstrip(")") for line in panel.splitlines() if line.startswith("![")]
        assert (micro_compare_dir / plot).stat().st_size > 0, plot
    quantisation = next(p for p in panels if p.startswith("Quantisation"))
    assert "4-bit rounding" in quantisation and "unknown" in quantisation.lower()  # the row and its floor


def test_attack_command_reproduces_the_run_and_refuses_clobber(micro_compare_dir, tmp_path):
    out = tmp_path / "attack"
    runner = CliRunner()
    result = runner.invoke(app, ["attack", "--run", str(micro_compare_dir), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    attacked = json.loads((out / "metrics.json").read_text())["methods"]
    run = json.loads((micro_compare_dir / "compare.json").read_text())["methods"]
    assert set(attacked) == set(ALL_METHODS)  # a model directory per trained method and the clamp hook
    for name in ALL_METHODS:
        for key in ("forget_recall_after", "relearn_recall", "forget_probe_auc_residual_after"):
            assert attacked[name][key] == pytest.approx(run[name][key], abs=1e-6), (name, key)
    assert (out / "report.html").exists()
    again = runner.invoke(app, ["attack", "--run", str(micro_compare_dir), "--out", str(out), "--quiet"])
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_attack_command_explains_bad_input(micro_compare_dir, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["attack", "--run", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "has no config.yaml" in result.output
    bad = tmp_path / "notamodel"
    bad.mkdir()
    result = runner.invoke(
        app, ["attack", "--run", str(micro_compare_dir), "--model", str(bad), "--out", str(tmp_path / "o2"), "--quiet"]
    )
    assert result.exit_code == 2 and "is not a saved model" in result.output
    assert not (tmp_path / "o2").exists()  # refused before any output or compute
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            str(bad),
            "--config",
            str(micro_compare_dir / "config.yaml"),
            "--out",
            str(tmp_path / "o3"),
        ],
    )
    assert result.exit_code == 2 and "is not a saved model" in result.output
    assert not (tmp_path / "o3").exists()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHECK_IMAGES = """<script>window.addEventListener("load", () => {
  const imgs = [...document.images];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.insertAdjacentHTML("beforeend", `<pre id="imgcheck">${ok}/${imgs.length}</pre>`);
});</script></body>"""


@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("SAE_UNLEARN_REQUIRE_CHROMIUM"),
    reason="headless Chromium not installed (.ci/run installs it and sets SAE_UNLEARN_REQUIRE_CHROMIUM)",
)
def test_report_html_renders_in_chromium_with_every_image(micro_compare_dir, tmp_path):
    assert CHROMIUM is not None, "SAE_UNLEARN_REQUIRE_CHROMIUM is set but chromium is not installed"
    html = (micro_compare_dir / "report.html").read_text()
    assert 'src="plots/' not in html  # self-contained: every image inlined
    n_images = html.count("<img ")
    assert n_images >= 10  # trade-off, recall, relearning, histograms, projection, latents and losses
    probe = tmp_path / "probe.html"  # a copy away from plots/, so only inlined images can load
    probe.write_text(html.replace("</body>", CHECK_IMAGES))
    dom = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    ).stdout
    assert f'<pre id="imgcheck">{n_images}/{n_images}</pre>' in dom, dom[-500:]


def test_attacks_can_be_switched_off(micro_workspace):
    from sae_unlearn.evaluation.evaluate import evaluate_state
    from sae_unlearn.metrics.registry import describe

    cfg = micro_workspace.cfg.model_copy(
        update={"attack": micro_workspace.cfg.attack.model_copy(update={"enabled": False})}
    )
    m = evaluate_state(micro_workspace.with_config(cfg).evaluation, micro_workspace.model)
    assert "forget_recall" in m
    # no key of any attack, those the registry computes (readout, quantisation, membership, indirect questions) too
    attacked = {k: found[0].attack for k in m if (found := describe(k)) is not None and found[0].attack}
    assert not attacked, attacked
    on = evaluate_state(micro_workspace.evaluation, micro_workspace.model)  # the check can fail: on, they are there
    assert {"forget_recall_readout", "forget_loss_auc", "forget_recall_quant8"} <= on.keys()


def test_extended_attacks_are_left_to_compare_and_attack_where_a_run_asks(micro_workspace):
    """``attack.extended: false`` (the SmolLM2 demo's preset, for its 15 minutes): quantisation, membership and the
    indirect questions are not run, the other attacks are; `compare` and `attack` set it back on."""
    from sae_unlearn.cli import DEMO_REAL_CONFIG
    from sae_unlearn.config import load_config
    from sae_unlearn.evaluation.evaluate import evaluate_state
    from sae_unlearn.evaluation.membership import SCORES

    extended = ("forget_recall_quant", *SCORES, "forget_reverse", "forget_two_hop", "forget_alias")
    ws = micro_workspace
    full = evaluate_state(ws.evaluation, ws.model)
    assert "forget_recall_quant4" in full and "forget_mink_auc" in full
    cfg = ws.cfg.model_copy(update={"attack": ws.cfg.attack.model_copy(update={"extended": False})})
    lean = evaluate_state(ws.with_config(cfg).evaluation, ws.model)
    assert not [k for k in lean if k.startswith(extended)], sorted(lean)
    assert "paraphrase_recall_context" in lean and "forget_recall" in lean  # the other attacks still run
    assert load_config(DEMO_REAL_CONFIG, {}).attack.extended is False
    assert load_config(DEMO_REAL_CONFIG, {"attack.extended": True}).attack.extended is True


def test_rounding_keeps_each_weight_within_half_a_step_of_its_group():
    """Round-to-nearest per group: at most 2^bits levels per group, each weight within half a step (the
    group's range over 2^bits - 1) of where it was; 8 bits lands far closer than 4."""
    torch.manual_seed(0)
    w = torch.randn(6, 256)
    for bits in (8, 4):
        q = round_to_nearest(w, bits, group_size=128)
        groups, qg = w.reshape(6, 2, 128), q.reshape(6, 2, 128)
        step = (groups.amax(-1).clamp_min(0) - groups.amin(-1).clamp_max(0)) / (2**bits - 1)
        assert ((groups - qg).abs() <= step[..., None] / 2 + 1e-6).all()
        assert max(len(torch.unique(g)) for g in qg.reshape(-1, 128)) <= 2**bits
    assert (w - round_to_nearest(w, 8)).abs().mean() < (w - round_to_nearest(w, 4)).abs().mean() / 8
    with pytest.raises(ValueError, match="bits must be"):
        round_to_nearest(w, 1)


def test_quantisation_erases_an_edit_smaller_than_its_step():
    """Why the attack exists: weights moved by much less than a 4-bit step (the group's range kept) round back onto
    the original weights' values, so an edit made of small weight changes is undone; 8 bits keeps more of it."""
    torch.manual_seed(0)
    w = torch.randn(8, 256)
    groups = w.reshape(8, 2, 128)
    extremes = (groups == groups.amax(-1, keepdim=True)) | (groups == groups.amin(-1, keepdim=True))
    edit = (1e-3 * torch.sign(torch.randn_like(groups))).masked_fill(extremes, 0).reshape(8, 256)
    edited = w + edit
    assert (edited != w).float().mean() > 0.95
    same4 = (round_to_nearest(edited, 4) == round_to_nearest(w, 4)).float().mean()
    same8 = (round_to_nearest(edited, 8) == round_to_nearest(w, 8)).float().mean()
    assert same4 > 0.95, "most edited weights round back to the original's values at 4 bits"
    assert same8 < same4


def test_quantized_copy_rounds_the_blocks_of_a_copy_and_nothing_else(micro_workspace):
    model = micro_workspace.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rounded = quantized_copy(model, 4).state_dict()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items()), "the model itself was rounded"
    block = "transformer.h.0.mlp.c_fc.weight"  # GPT-2 (the world model): a Conv1D, [in, out]
    assert not torch.equal(rounded[block], before[block])
    assert max(len(torch.unique(rounded[block][:, j])) for j in range(8)) <= 16, "4 bits: <= 16 levels per group"
    assert torch.equal(rounded["transformer.wte.weight"], before["transformer.wte.weight"]), "embeddings stay"
