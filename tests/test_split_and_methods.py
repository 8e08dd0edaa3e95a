import copy

import pytest
import torch

from sae_unlearn.entities.types import Entity, EntitySplit, Fact
from sae_unlearn.errors import UserInputError
from sae_unlearn.methods import REGISTRY, get_method
from sae_unlearn.methods.base import UnlearnTask
from sae_unlearn.methods.sae_guided import SAEGuidedConfig, SAEGuidedUnlearner
from sae_unlearn.models.capture import residual_and_last_logits
from sae_unlearn.models.layers import decoder_layers


def _ent(name: str) -> Entity:
    return Entity(name, "person", [Fact(f"{name} works as a", "painter")])


def test_empty_forget_set_is_refused():
    with pytest.raises(UserInputError, match="forget set is empty"):
        EntitySplit(forget=[], retain=[_ent("A B")], heldout_known=[], unknown=[_ent("C D")]).validate()


def test_target_also_retained_is_refused():
    with pytest.raises(UserInputError, match=r"\['A B'\] are both forget targets and retained"):
        EntitySplit(forget=[_ent("A B")], retain=[_ent("A B")], heldout_known=[], unknown=[]).validate()


def test_entity_missing_from_its_prompt_is_refused():
    bad = Entity("A B", "person", [Fact("C D works as a", "painter")])
    with pytest.raises(UserInputError, match="'A B' does not occur in its prompt"):
        EntitySplit(forget=[bad], retain=[], heldout_known=[], unknown=[]).validate()


def test_unknown_method_lists_known_ones():
    with pytest.raises(UserInputError, match="Unknown method 'magic'; known methods: " + ", ".join(sorted(REGISTRY))):
        get_method("magic")


def _task(ws, model, steps):
    return UnlearnTask(model=model, tokenizer=ws.tokenizer, split=ws.split, layer=ws.layer, sae=ws.sae,
                       known_latents=ws.scores.top_known(5), unknown_latents=ws.scores.top_unknown(5), steps=steps,
                       progress=False)


def test_non_finite_loss_rolls_back_and_keeps_last_good_weights(micro_workspace):
    ws = micro_workspace
    model = copy.deepcopy(ws.model)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    outcome = SAEGuidedUnlearner(SAEGuidedConfig(lr=1e30)).unlearn(_task(ws, model, steps=6))
    assert outcome.stopped_reason == "non_finite_loss"
    assert "kept the last good weights" in outcome.message
    for key, value in model.state_dict().items():
        assert torch.isfinite(value).all(), key
    # every update was non-finite, so the last good weights are the original ones
    assert all(torch.equal(original[k], v) for k, v in model.state_dict().items())


def test_sae_guided_moves_targets_toward_unknown_reference(micro_workspace):
    ws = micro_workspace
    model = copy.deepcopy(ws.model)
    method = SAEGuidedUnlearner(SAEGuidedConfig(w_kl=0.0, w_downstream=0.0))
    outcome = method.unlearn(_task(ws, model, steps=40))
    assert outcome.steps_run == 40 and outcome.stopped_reason == "budget"
    assert outcome.loss_history[-1] < 0.5 * max(outcome.loss_history[:3])
    changed = [n for (n, a), b in zip(model.named_parameters(), ws.model.parameters()) if not torch.equal(a, b)]
    assert changed and all(".h." in n for n in changed), "only decoder blocks up to the layer may change"
    # without the downstream term nothing above the SAE's layer needs to (or may) move
    assert not any(f".h.{i}." in n for n in changed for i in range(ws.layer + 1, 10))


def test_chosen_train_layers_are_the_only_ones_changed(micro_workspace):
    ws = micro_workspace
    model = copy.deepcopy(ws.model)
    SAEGuidedUnlearner(SAEGuidedConfig(train_layers=[0], w_kl=0.0)).unlearn(_task(ws, model, steps=3))
    changed = {n.split(".")[2] for (n, a), b in zip(model.named_parameters(), ws.model.parameters()) if not torch.equal(a, b)}
    assert changed == {"0"}


def test_train_layers_out_of_range_is_refused(micro_workspace):
    ws = micro_workspace
    with pytest.raises(UserInputError, match=r"train_layers \[7\] out of range"):
        SAEGuidedUnlearner(SAEGuidedConfig(train_layers=[7])).unlearn(_task(ws, copy.deepcopy(ws.model), steps=1))


def test_output_term_makes_targets_answer_like_unknown_entities(micro_workspace):
    """``w_output``: the forget prompts' next-token distribution moves onto the unknown reference's."""
    ws = micro_workspace
    model = copy.deepcopy(ws.model)
    method = SAEGuidedUnlearner(SAEGuidedConfig(lr=5e-3, w_retain=3.0, w_output=1.0))
    task = _task(ws, model, steps=60)
    method.unlearn(task)
    with torch.no_grad():
        _, logp = method._forget_forward(task, method.forget)
        kl_after = method._output_kl(logp, method.ref_next).mean()
    assert kl_after < 0.3 * method.gap_output, f"KL to the unknown reference {method.gap_output:.3f} -> {kl_after:.3f}"


def test_downstream_term_erases_what_the_upper_blocks_read_from_the_old_representation(micro_workspace):
    """``w_downstream``: the blocks above L, fed the targets' *original* layer-L residual, answer like
    for unknown names (the facts stored under the old representation go); so they must be trained."""
    ws = micro_workspace
    model = copy.deepcopy(ws.model)
    top_before = [p.detach().clone() for p in decoder_layers(model)[-1].parameters()]
    method = SAEGuidedUnlearner(SAEGuidedConfig(lr=5e-3, w_retain=3.0, w_downstream=1.0))
    task = _task(ws, model, steps=60)
    method.unlearn(task)
    assert not all(torch.equal(a, b) for a, b in zip(top_before, decoder_layers(model)[-1].parameters()))
    f = method.forget
    with torch.no_grad():
        _, logits = residual_and_last_logits(model, f.input_ids, f.attention_mask, task.layer, f.prompt_last,
                                             method.forget_hidden0)
        kl_after = method._output_kl(torch.log_softmax(logits.float(), dim=-1), method.ref_next).mean()
    assert kl_after < 0.3 * method.gap_output, f"patched KL {method.gap_output:.3f} -> {kl_after:.3f}"
