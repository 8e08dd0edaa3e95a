"""Baselines' options and their stop at the unknown floor (what each method must reach: test_method_contracts)."""

import copy
import dataclasses
from pathlib import Path

import pytest
import torch
import yaml
from torch.optim.optimizer import register_optimizer_step_pre_hook

import sae_unlearn
from sae_unlearn.errors import UserInputError
from sae_unlearn.methods import build_method
from sae_unlearn.methods.base import UnlearnTask


def micro_task(ws, steps: int, **extra) -> UnlearnTask:
    """The micro world's split on a fresh copy of its model: what a baseline is handed."""
    return UnlearnTask(
        model=copy.deepcopy(ws.model),
        tokenizer=ws.tokenizer,
        split=ws.split,
        layer=ws.layer,
        sae=ws.sae,
        known_latents=[],
        unknown_latents=[],
        steps=steps,
        progress=False,
        **extra,
    )


def test_method_options_are_checked():
    with pytest.raises(UserInputError, match=r"Unknown option\(s\) \['betta'\] for method 'npo'; allowed: .*beta"):
        build_method("npo", {"betta": 0.2})


@pytest.mark.parametrize("stop_at_floor,gap", [(True, 0.03), (False, 0.03), (True, 0.2)])
def test_baseline_stops_once_targets_are_recalled_like_unknown_entities(micro_workspace, stop_at_floor, gap):
    ws = micro_workspace
    checks = []

    def gap_to_floor(model) -> float:
        checks.append(model)
        return gap

    task = micro_task(ws, steps=25, forget_gap_to_floor=gap_to_floor)
    outcome = build_method("gradient_ascent", {"stop_at_floor": stop_at_floor}).unlearn(task)
    if stop_at_floor and gap <= 0.05:  # checked every eval_every (10) steps, on the model being trained
        assert (outcome.stopped_reason, outcome.steps_run) == ("early_stop", 10)
        assert checks == [task.model]
    elif stop_at_floor:  # 20 points above the floor: not forgotten yet, checked at 10 and 20, runs on
        assert (outcome.stopped_reason, outcome.steps_run, checks) == ("budget", 25, [task.model] * 2)
    else:
        assert (outcome.stopped_reason, outcome.steps_run, checks) == ("budget", 25, [])


def test_training_recipe_warms_up_decays_and_clips(micro_workspace):
    """The baselines' recipe (open-unlearning's, under the HF Trainer): the rate ramps up from 0 over the warmup,
    decays linearly to 0 at the budget, and every update's gradient norm is clipped."""
    ws = micro_workspace
    seen: list[tuple[float, float]] = []

    def record(opt, args, kwargs):
        grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
        seen.append(
            (opt.param_groups[0]["lr"], float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
        )

    task = micro_task(ws, steps=20)
    options = {"stop_at_floor": False, "lr": 1e-4, "warmup": 0.2, "max_grad_norm": 0.01}
    handle = register_optimizer_step_pre_hook(record)
    try:
        outcome = build_method("gradient_ascent", options).unlearn(task)
    finally:
        handle.remove()
    assert outcome.steps_run == 20 and len(seen) == 20
    lrs, norms = zip(*seen)
    assert lrs[0] == 0.0 and lrs[4] == pytest.approx(1e-4)  # 4 warmup steps (20 %), as the HF Trainer counts them
    assert lrs[1:5] == tuple(sorted(lrs[1:5])) and lrs[4:] == tuple(sorted(lrs[4:], reverse=True))
    assert lrs[19] == pytest.approx(1e-4 / 16)  # linear: 1/16 of the way left after the 16 decay steps
    # gradient ascent's raw gradients are far above 0.01: every update is cut to that norm, none above it
    assert max(norms) <= 0.01 * (1 + 1e-4) and min(norms) == pytest.approx(0.01, rel=1e-3)


DATA = Path(sae_unlearn.__file__).parent / "data"


def test_sae_guided_trains_with_the_baselines_recipe_and_its_presets_keep_their_own():
    """SAE-guided's generic default is the baselines' recipe without weight decay (it would move every embedding
    row under ``train_name_embeddings``); the real-model presets keep the constant rate they were tuned with."""
    sae_guided, npo, rmu = build_method("sae_guided").cfg, build_method("npo").cfg, build_method("rmu").cfg
    assert (sae_guided.lr_schedule, sae_guided.warmup, sae_guided.max_grad_norm, sae_guided.weight_decay) == (
        "linear",
        0.1,
        1.0,
        0.0,
    )
    for preset in ("smollm2_demo", "smollm2_deep", "gemma3_270m"):
        block = yaml.safe_load((DATA / f"{preset}.yaml").read_text())["unlearn"]["methods"]["sae_guided"]
        assert (block["lr_schedule"], block["warmup"], block["max_grad_norm"]) == ("constant", 0.0, None), preset
    assert (npo.lr_schedule, npo.warmup, npo.max_grad_norm, npo.weight_decay) == ("linear", 0.1, 1.0, 0.01)
    assert (rmu.lr_schedule, rmu.warmup, rmu.max_grad_norm) == ("constant", 0.0, 1.0)


@pytest.mark.parametrize("lora", [False, True])
def test_rmu_trains_only_the_mlp_output_projections_at_the_references_depth(micro_workspace, lora):
    """WMDP's RMU steers layer 7 of 32 and updates model.layers.(5|6|7).mlp.down_proj.weight: on the micro world's
    3 blocks that is layer round(7/32 * 3) = 1, so the MLP output projections (GPT-2: mlp.c_proj) of blocks 0 and
    1, nothing else; under LoRA the adapter sits on exactly those modules (not on attention's c_proj too)."""
    ws = micro_workspace
    task = micro_task(ws, steps=3, lora={"rank": 2, "alpha": 4.0} if lora else None)
    before = {n: p.detach().clone() for n, p in task.model.named_parameters()}
    method = build_method("rmu", {"stop_at_floor": False, "warmup": 0.0})
    method.unlearn(task)
    assert method.steered_layer(task) == 1 and method.trained_layers(task) == [0, 1]
    wanted = {f"transformer.h.{i}.mlp.c_proj.weight" for i in (0, 1)}
    if lora:
        adapted = {
            n.removeprefix("base_model.model.").removesuffix(".lora_A")
            for n, _ in task.model.named_modules()
            if n.endswith("lora_A")
        }
        assert adapted == {w.removesuffix(".weight") for w in wanted}
    else:
        moved = {n for n, p in task.model.named_parameters() if not torch.equal(p, before[n])}
        assert moved == wanted


def test_an_mlp_only_edit_names_the_block_without_an_mlp(micro_workspace):
    """RMU and ``train_modules: mlp`` share one parameter choice; an architecture whose block has no ``.mlp`` gets
    an error naming the method and the block instead of a silently empty (or whole-block) edit."""
    from sae_unlearn.methods.base import trainable_mlp_params

    model = copy.deepcopy(micro_workspace.model)
    del model.transformer.h[1].mlp
    with pytest.raises(UserInputError, match=r"rmu trains the MLPs, but block 1 of GPT2LMHeadModel has no \.mlp\."):
        trainable_mlp_params(model, [0, 1], "rmu")
    whole = trainable_mlp_params(model, [0], "rmu")
    assert {id(p) for p in whole} == {id(p) for p in model.transformer.h[0].mlp.parameters()}
    assert all(p.requires_grad == (id(p) in {id(q) for q in whole}) for p in model.parameters())


def test_rmu_layer_out_of_range_is_refused(micro_workspace):
    with pytest.raises(UserInputError, match=r"rmu layer 7 is out of range: this model has 3 layers \(0\.\.2\)"):
        build_method("rmu", {"layer": 7}).unlearn(micro_task(micro_workspace, steps=1))


def test_kl_retain_is_zero_against_itself_and_grows_as_the_model_moves(micro_workspace):
    """``retain_loss: kl``: KL(original || edited) on the retained facts, over real tokens only."""
    from sae_unlearn.methods.lm_losses import encode_fact_answers, retain_kl

    ws = micro_workspace
    batch = encode_fact_answers(ws.tokenizer, ws.split.retain[:3], torch.device("cpu"))
    reference, model = ws.model, copy.deepcopy(ws.model)
    with torch.no_grad():
        assert float(retain_kl(model, reference, batch)) == pytest.approx(0.0, abs=1e-6)
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        assert float(retain_kl(model, reference, batch)) > 1e-3
        # padding is no text: a row padded further gives the same KL
        wide = type(batch)(
            torch.cat([batch.input_ids, batch.input_ids[:, :3]], 1),
            torch.cat([batch.attention_mask, torch.zeros_like(batch.attention_mask[:, :3])], 1),
            torch.cat([batch.labels, torch.full_like(batch.labels[:, :3], -100)], 1),
        )
        assert float(retain_kl(model, reference, wide)) == pytest.approx(float(retain_kl(model, reference, batch)))


@pytest.mark.parametrize("name", ["grad_diff", "npo", "simnpo", "idk_nll", "idk_dpo"])
def test_kl_retain_variant_trains_against_a_frozen_copy_of_the_original(micro_workspace, name):
    ws = micro_workspace
    task = micro_task(ws, steps=10)
    original = {k: v.clone() for k, v in task.model.state_dict().items()}
    method = build_method(name, {"retain_loss": "kl", "stop_at_floor": False})
    outcome = method.unlearn(task)
    assert outcome.stopped_reason == "budget" and len(outcome.loss_terms["retain"]) == 10
    assert outcome.loss_terms["retain"][0] == pytest.approx(0.0, abs=1e-5)  # the model starts as its reference
    assert max(outcome.loss_terms["retain"]) > 0
    assert all(torch.equal(v, original[k]) for k, v in method.reference.state_dict().items())  # never trained
    assert any(not torch.equal(v, original[k]) for k, v in task.model.state_dict().items())


def test_retain_loss_names_its_choices():
    with pytest.raises(UserInputError, match=r"retain_loss = 'kld'.*'nll' or 'kl'"):
        build_method("grad_diff", {"retain_loss": "kld"})


def test_a_run_that_spends_its_budget_keeps_the_checked_weights_nearest_the_floor(micro_workspace):
    """The best checkpoint: the validation gap is smallest at the second check (step 20) and never within the
    margin; the run ends on step 20's weights, and says so."""
    ws = micro_workspace
    gaps = iter([0.40, 0.10, 0.30])
    seen: list[dict] = []

    def gap_to_floor(model) -> float:
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        return next(gaps)

    task = micro_task(ws, steps=30, forget_gap_to_floor=gap_to_floor)
    outcome = build_method("grad_diff", {}).unlearn(task)
    assert (outcome.stopped_reason, outcome.steps_run, outcome.best_step) == ("budget", 30, 20)
    assert "kept the weights of step 20" in outcome.message
    final = task.model.state_dict()
    assert all(torch.equal(final[k], v) for k, v in seen[1].items())  # step 20's weights ...
    assert any(not torch.equal(final[k], v) for k, v in seen[2].items())  # ... not step 30's


def test_the_last_weights_stay_when_they_are_the_nearest(micro_workspace):
    gaps = iter([0.40, 0.30, 0.20])
    task = micro_task(micro_workspace, steps=30, forget_gap_to_floor=lambda model: next(gaps))
    outcome = build_method("grad_diff", {}).unlearn(task)
    assert (outcome.stopped_reason, outcome.best_step, outcome.message) == ("budget", None, "")


def test_topic_latents_fire_on_the_targets_and_almost_never_on_retained_entities():
    from sae_unlearn.methods.sae_clamp import topic_latents

    forget = torch.zeros(100, 5)
    retain = torch.zeros(200, 5)
    forget[:, 0], retain[:100, 0] = 1.0, 1.0  # fires everywhere: a template latent, not the topic
    forget[:80, 1] = 2.0  # the targets' own latent, never on retained tokens
    forget[:40, 2], retain[:1, 2] = 1.0, 1.0  # fires on 0.5 % of retained tokens: under the 1 % bound
    retain[:, 3] = 1.0  # never on the targets
    forget[:10, 4], retain[:4, 4] = 1.0, 1.0  # 2 % of retained tokens: over the bound
    assert topic_latents(forget, retain, n=10, retain_frequency=0.01) == [1, 2]
    assert topic_latents(forget, retain, n=1, retain_frequency=0.01) == [1]
    assert topic_latents(forget, retain, n=10, retain_frequency=0.03) == [1, 2, 4]
    with pytest.raises(UserInputError, match="retain_frequency"):
        topic_latents(forget[:, [0, 3]], retain[:, [0, 3]], n=10, retain_frequency=0.01)


def test_topic_clamping_spares_the_retained_entities_that_known_entity_clamping_hits(micro_workspace):
    """The paper's topic-specific latents against the generic known-entity ones at the same clamp. The micro
    world's 384-latent SAE has almost no latent of the targets' own (under 1 % of retained tokens: three, rare), so
    at the default bound the hook spares the retained entities that the generic choice costs; allowed latents that
    fire on a fifth of the retained tokens, it reaches the targets."""
    from sae_unlearn.metrics.recall import recall

    ws = micro_workspace
    known = ws.scores.top_known(ws.cfg.latents.top_k)

    def clamped(**options) -> list[float]:
        task = dataclasses.replace(micro_task(ws, steps=0), known_latents=known)
        outcome = build_method("sae_clamp", {"multiplier": 20, **options}).unlearn(task)
        with outcome.context(task.model):
            return [
                recall(task.model, ws.tokenizer, entities, ws.eval_heldout, ws.cfg.eval.max_new_tokens)
                for entities in (ws.split.forget, ws.split.retain)
            ]

    generic, topic, looser = clamped(features="known_entity"), clamped(), clamped(retain_frequency=0.2)
    assert topic[1] > generic[1] + 0.2, (topic, generic)
    before = recall(ws.model, ws.tokenizer, ws.split.forget, ws.eval_heldout, ws.cfg.eval.max_new_tokens)
    assert looser[0] < before - 0.3, (looser, before)
