"""Every registered method, on the micro world, through the same interface and evaluation."""

import copy

import pytest

from sae_unlearn.methods import REGISTRY, build_method
from sae_unlearn.errors import UserInputError
from sae_unlearn.methods.base import UnlearnTask
from sae_unlearn.metrics.recall import recall

BUDGET = {"sae_guided": 150, "gradient_ascent": 30, "grad_diff": 30, "npo": 60, "rmu": 100, "sae_clamp": 0}


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_method_lowers_forget_recall_on_micro_world(micro_workspace, name):
    ws = micro_workspace
    model = copy.deepcopy(ws.model)
    task = UnlearnTask(model=model, tokenizer=ws.tokenizer, split=ws.split, layer=ws.layer, sae=ws.sae,
                       known_latents=ws.scores.top_known(10), unknown_latents=ws.scores.top_unknown(10),
                       steps=max(1, BUDGET[name]), progress=False)
    before = recall(ws.model, ws.tokenizer, ws.split.forget, heldout=None)
    options = {"lr": 5e-3, "w_retain": 3.0} if name == "sae_guided" else {}  # as in the micro config
    outcome = build_method(name, options).unlearn(task)
    with outcome.context(model):
        after = recall(model, ws.tokenizer, ws.split.forget, heldout=None)
    assert after <= before - 0.2, f"{name}: forget recall {before:.2f} -> {after:.2f}"


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

    task = UnlearnTask(model=copy.deepcopy(ws.model), tokenizer=ws.tokenizer, split=ws.split, layer=ws.layer,
                       sae=ws.sae, known_latents=[], unknown_latents=[], steps=25, progress=False,
                       forget_gap_to_floor=gap_to_floor)
    outcome = build_method("gradient_ascent", {"stop_at_floor": stop_at_floor}).unlearn(task)
    if stop_at_floor and gap <= 0.05:  # checked every eval_every (10) steps, on the model being trained
        assert (outcome.stopped_reason, outcome.steps_run) == ("early_stop", 10)
        assert checks == [task.model]
    elif stop_at_floor:  # 20 points above the floor: not forgotten yet, checked at 10 and 20, runs on
        assert (outcome.stopped_reason, outcome.steps_run, checks) == ("budget", 25, [task.model] * 2)
    else:
        assert (outcome.stopped_reason, outcome.steps_run, checks) == ("budget", 25, [])
