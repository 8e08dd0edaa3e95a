"""Baselines' options and their stop at the unknown floor (what each method must reach: test_method_contracts)."""

import copy

import pytest

from sae_unlearn.errors import UserInputError
from sae_unlearn.methods import build_method
from sae_unlearn.methods.base import UnlearnTask


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

    task = UnlearnTask(
        model=copy.deepcopy(ws.model),
        tokenizer=ws.tokenizer,
        split=ws.split,
        layer=ws.layer,
        sae=ws.sae,
        known_latents=[],
        unknown_latents=[],
        steps=25,
        progress=False,
        forget_gap_to_floor=gap_to_floor,
    )
    outcome = build_method("gradient_ascent", {"stop_at_floor": stop_at_floor}).unlearn(task)
    if stop_at_floor and gap <= 0.05:  # checked every eval_every (10) steps, on the model being trained
        assert (outcome.stopped_reason, outcome.steps_run) == ("early_stop", 10)
        assert checks == [task.model]
    elif stop_at_floor:  # 20 points above the floor: not forgotten yet, checked at 10 and 20, runs on
        assert (outcome.stopped_reason, outcome.steps_run, checks) == ("budget", 25, [task.model] * 2)
    else:
        assert (outcome.stopped_reason, outcome.steps_run, checks) == ("budget", 25, [])
