"""The Python API (``from sae_unlearn import unlearn, evaluate``) on a model held in memory: the micro world's
trained model and SAE, passed as objects, never through the CLI or a model directory."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from conftest import MICRO

from sae_unlearn import evaluate, unlearn
from sae_unlearn.errors import UserInputError


@pytest.fixture(scope="module")
def api_setup(micro_workspace):
    ws = micro_workspace
    config = copy.deepcopy(MICRO)
    config.pop("world"), config.pop("world_model")  # the API takes the model as it is
    config["unlearn"] |= {"steps": 60}
    config["attack"] = {"enabled": False}
    config["eval"] |= {"answerable_substitutes": 0}  # made-up names would be out of the world's vocabulary
    targets = [e.name for e in ws.split.forget[:2]]
    return ws, config, targets


@pytest.fixture(scope="module")
def api_result(api_setup):
    ws, config, targets = api_setup
    original = {k: v.clone() for k, v in ws.model.state_dict().items()}
    result = unlearn(
        ws.model,
        ws.tokenizer,
        targets,
        entities=ws.world.known,
        unknown=ws.world.unknown,
        sae=ws.sae,
        config=config,
        progress=False,
    )
    return result, original


def test_unlearn_edits_a_copy_and_the_targets_are_forgotten(api_setup, api_result):
    ws, _, targets = api_setup
    result, original = api_result
    assert result.model is not ws.model
    assert all(torch.equal(original[k], v) for k, v in ws.model.state_dict().items()), "the caller's model changed"
    m = result.metrics
    assert [e.name for e in result.workspace.split.forget] == targets
    assert m["forget_recall_before"] >= 0.8
    assert m["forget_recall_after"] <= m["forget_recall_before"] - 0.25, m["forget_recall_after"]
    assert m["retain_recall_after"] >= m["retain_recall_before"] - 0.1
    assert result.outcome.loss_terms and m["steps"] == result.outcome.steps_run


def test_evaluate_reads_any_model_against_the_original(api_result, api_setup):
    result, _ = api_result
    ws = api_setup[0]
    again = evaluate(result)
    assert again["forget_recall_after"] == result.metrics["forget_recall_after"]
    untouched = evaluate(result, ws.model)  # the original model scores as it did before
    assert untouched["forget_recall_after"] == untouched["forget_recall_before"]


def test_save_writes_the_run_outputs_and_refuses_to_clobber(api_result, tmp_path):
    result, _ = api_result
    out = result.save(tmp_path / "run")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["methods"]["sae_guided"]["forget_recall_after"] == result.metrics["forget_recall_after"]
    assert (out / "report.md").exists() and (out / "model" / "config.json").exists()
    with pytest.raises(UserInputError, match="not empty|exists"):
        result.save(out)


def test_bad_input_fails_before_any_compute(api_setup):
    ws, config, _ = api_setup
    with pytest.raises(UserInputError, match="Unknown method|unknown method"):
        unlearn(ws.model, ws.tokenizer, ["x"], entities=ws.world.known, config=config, method="nope", progress=False)
    with pytest.raises(UserInputError, match=r"\['Nobody Atall'\] are not in the given entities"):
        unlearn(
            ws.model,
            ws.tokenizer,
            ["Nobody Atall"],
            entities=ws.world.known,
            unknown=ws.world.unknown,
            sae=ws.sae,
            config=config,
            progress=False,
        )


def test_an_unevaluated_result_is_not_saved_as_a_report(tmp_path):
    from sae_unlearn import UnlearnResult
    from sae_unlearn.methods import UnlearnOutcome

    bare = UnlearnResult(
        model=None, metrics={"steps": 3}, outcome=UnlearnOutcome(3, "budget"), workspace=None, method="sae_guided"
    )
    with pytest.raises(UserInputError, match="evaluate=False"):
        bare.save(tmp_path / "out")
    assert not (tmp_path / "out").exists(), "nothing is written when the save is refused"
