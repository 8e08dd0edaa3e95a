import copy
import dataclasses
import random

import pytest
import torch

from sae_unlearn.attacks.relearn import embeddings_edited
from sae_unlearn.entities.types import Entity, EntitySplit, Fact
from sae_unlearn.errors import UserInputError
from sae_unlearn.methods import REGISTRY, get_method, sharding
from sae_unlearn.methods.base import UnlearnTask
from sae_unlearn.methods.sae_guided import SAEGuidedConfig, SAEGuidedUnlearner, unknown_spread
from sae_unlearn.metrics.alignment import centroid_distances, entity_codes
from sae_unlearn.metrics.recall import recall
from sae_unlearn.models.capture import residual_and_last_logits, residual_at_layer
from sae_unlearn.models.layers import decoder_layers
from sae_unlearn.models.prompts import fact_prompts, name_tokens


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
    return UnlearnTask(
        model=model,
        tokenizer=ws.tokenizer,
        split=ws.split,
        layer=ws.layer,
        sae=ws.sae,
        known_latents=ws.scores.top_known(5),
        unknown_latents=ws.scores.top_unknown(5),
        steps=steps,
        progress=False,
    )


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


def _target_codes_summary(ws, model) -> dict[str, float]:
    """The targets' SAE codes at the entity's last token: mean distance to the original model's known and
    unknown centroids, and the share of targets the known/unknown probe calls unknown."""
    z, owner = entity_codes(model, ws.tokenizer, ws.sae, ws.split.forget, ws.layer)
    dist_known, dist_unknown = centroid_distances(z, ws.evaluation.mu_known, ws.evaluation.mu_unknown)
    return {"dist_known": dist_known, "dist_unknown": dist_unknown, "unknown_share": ws.probe.share_unknown(z, owner)}


def test_sae_guided_moves_targets_toward_unknown_reference(micro_workspace):
    """The direction is the method: the targets' codes must move toward the unknown entities and away
    from the known ones (a falling loss alone would also come from pulling them toward the wrong pool)."""
    ws = micro_workspace
    model = copy.deepcopy(ws.model)
    before = _target_codes_summary(ws, ws.model)
    method = SAEGuidedUnlearner(SAEGuidedConfig(w_kl=0.0, w_downstream=0.0))
    outcome = method.unlearn(_task(ws, model, steps=40))
    assert outcome.steps_run == 40 and outcome.stopped_reason == "budget"
    assert outcome.loss_history[-1] < 0.5 * max(outcome.loss_history[:3])
    after = _target_codes_summary(ws, model)
    assert after["dist_unknown"] < before["dist_unknown"], (before, after)
    assert after["dist_known"] > before["dist_known"], (before, after)
    assert after["unknown_share"] > before["unknown_share"], (before, after)
    changed = [n for (n, a), b in zip(model.named_parameters(), ws.model.parameters()) if not torch.equal(a, b)]
    assert changed and all(".h." in n for n in changed), "only decoder blocks up to the layer may change"
    # without the downstream term nothing above the SAE's layer needs to (or may) move
    assert not any(f".h.{i}." in n for n in changed for i in range(ws.layer + 1, 10))


def test_chosen_train_layers_are_the_only_ones_changed(micro_workspace):
    ws = micro_workspace
    model = copy.deepcopy(ws.model)
    SAEGuidedUnlearner(SAEGuidedConfig(train_layers=[0], w_kl=0.0)).unlearn(_task(ws, model, steps=3))
    changed = {
        n.split(".")[2] for (n, a), b in zip(model.named_parameters(), ws.model.parameters()) if not torch.equal(a, b)
    }
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
        reference = method.forget_references(torch.arange(len(method.forget))).next_token
        kl_after = method._output_kl(logp, reference).mean()
    assert kl_after < 0.3 * method.gap_output, f"KL to the unknown reference {method.gap_output:.3f} -> {kl_after:.3f}"


def test_downstream_term_erases_what_the_upper_blocks_read_from_the_old_representation(micro_workspace):
    """``w_downstream``: the blocks above L, fed the targets' *original* layer-L residual, answer like for unknown
    names (the facts stored under the old representation go); so they must be trained. With ``downstream_input:
    path`` (the default) they also do halfway back from the edited residual to the original, the way a relearning
    attack takes, where ``original`` leaves more of the facts."""
    ws = micro_workspace

    def kl_at(downstream_input: str) -> tuple[float, float, float]:
        """The patched KL fed the original residual and fed the halfway point, and the gap it is scaled by."""
        model = copy.deepcopy(ws.model)
        top_before = [p.detach().clone() for p in decoder_layers(model)[-1].parameters()]
        method = SAEGuidedUnlearner(
            SAEGuidedConfig(lr=5e-3, w_retain=3.0, w_downstream=1.0, downstream_input=downstream_input)
        )
        task = _task(ws, model, steps=60)
        method.unlearn(task)
        assert not all(torch.equal(a, b) for a, b in zip(top_before, decoder_layers(model)[-1].parameters()))
        f = method.forget
        ref = method.forget_references(torch.arange(len(f)))
        out = []
        with torch.no_grad():
            edited = residual_at_layer(model, f.input_ids, f.attention_mask, task.layer)
            for fed in (ref.hidden0, ref.hidden0 + 0.5 * (edited - ref.hidden0)):
                _, logits = residual_and_last_logits(
                    model, f.input_ids, f.attention_mask, task.layer, f.prompt_last, fed
                )
                out.append(float(method._output_kl(torch.log_softmax(logits.float(), dim=-1), ref.next_token).mean()))
        return out[0], out[1], method.gap_output

    at_original, halfway_original, gap = kl_at("original")
    assert at_original < 0.3 * gap, f"patched KL {gap:.3f} -> {at_original:.3f}"
    _, halfway_path, _ = kl_at("path")
    assert halfway_path < 0.8 * halfway_original, (halfway_original, halfway_path)


def test_relearn_term_trains_against_a_simulated_relearning_step(micro_workspace, monkeypatch):
    """``w_relearn``: after one relearning step that teaches half the targets' facts, the other half answer more
    like strangers than after the same training without the term; refused where it cannot run."""
    ws = micro_workspace

    def trained(w_relearn: float) -> tuple[SAEGuidedUnlearner, UnlearnTask]:
        method = SAEGuidedUnlearner(SAEGuidedConfig(lr=5e-3, w_retain=3.0, w_relearn=w_relearn, relearn_radius=0.3))
        task = _task(ws, copy.deepcopy(ws.model), steps=25)
        method.unlearn(task)
        return method, task

    with_term, task = trained(1.0)
    without, task_without = trained(0.0)
    # the same simulated step on the model trained without the term (its references are the original model's too)
    without.cfg = without.cfg.model_copy(update={"w_relearn": 1.0})
    without.relearn_rows, without.relearn_facts = with_term.relearn_rows, with_term.relearn_facts
    for method, t in ((with_term, task), (without, task_without)):
        method._trained = [p.requires_grad_(True) for block in decoder_layers(t.model) for p in block.parameters()]
    after_step = [float(m._relearn_term(t, random.Random(0))) for m, t in ((with_term, task), (without, task_without))]
    assert after_step[0] < 0.8 * after_step[1], after_step
    no_output = SAEGuidedUnlearner(SAEGuidedConfig(w_relearn=1.0, w_downstream=0.0, w_output=0.0))
    with pytest.raises(UserInputError, match="w_relearn: it reads the strangers' next-token distribution"):
        no_output.unlearn(_task(ws, copy.deepcopy(ws.model), steps=1))
    with monkeypatch.context() as patched:
        patched.setattr(sharding, "fsdp_requested", lambda: True)
        with pytest.raises(UserInputError, match="w_relearn: .* not FSDP shards"):
            SAEGuidedUnlearner(SAEGuidedConfig(w_relearn=1.0)).unlearn(_task(ws, copy.deepcopy(ws.model), steps=1))
    # under LoRA the simulated step moves the adapter: the term has a gradient there, and none on the frozen base
    lora_task = dataclasses.replace(_task(ws, copy.deepcopy(ws.model), steps=1), lora={"rank": 4, "alpha": 8})
    lora_method = SAEGuidedUnlearner(SAEGuidedConfig(w_relearn=1.0))
    lora_method.unlearn(lora_task)
    adapter = [p.requires_grad_(True) for n, p in lora_task.model.named_parameters() if "lora_" in n]
    lora_method._trained = adapter
    lora_method._relearn_term(lora_task, random.Random(0)).backward()
    assert all(p.grad is not None for p in adapter) and sum(float(p.grad.abs().sum()) for p in adapter) > 0
    assert all(p.grad is None for n, p in lora_task.model.named_parameters() if "lora_" not in n)


def test_name_tokens_split_a_names_tokens_from_the_template_words(micro_workspace):
    ws = micro_workspace
    target = ws.split.forget[0]
    prompts, names, _ = fact_prompts([target])
    inside, outside = name_tokens(ws.tokenizer, prompts, names)
    name_ids = set(ws.tokenizer(" ".join(names[:1]), add_special_tokens=False)["input_ids"])
    assert name_ids <= inside and not inside & outside  # the micro world's names share no word with its templates
    prompt = prompts[0].replace(target.name, "")
    assert set(ws.tokenizer(prompt, add_special_tokens=False)["input_ids"]) <= outside
    # a word of a name that also occurs outside it is in both: the method never trains such a row
    word = prompt.split()[0]
    both, elsewhere = name_tokens(ws.tokenizer, [f"{word} {target.name} {word}"], [f"{word} {target.name}"])
    assert ws.tokenizer.convert_tokens_to_ids(word) in both & elsewhere


def test_name_embedding_rows_are_the_only_embedding_rows_trained(micro_workspace):
    """``train_name_embeddings``: the targets' name-token rows move with the blocks, every other row stays, and
    the gradient mask is gone once training ends (an attacker's fine-tuning moves any row)."""
    ws = micro_workspace
    model = copy.deepcopy(ws.model)
    method = SAEGuidedUnlearner(SAEGuidedConfig(w_downstream=0.0, train_name_embeddings=True))
    task = _task(ws, model, steps=30)
    forget_before = recall(model, ws.tokenizer, ws.split.forget, False, ws.cfg.eval.max_new_tokens)
    method.unlearn(task)
    rows = method.name_token_rows(task)
    prompts, names, _ = fact_prompts(ws.split.forget)
    assert set(rows) == name_tokens(ws.tokenizer, prompts, names)[0]
    before, after = ws.model.get_input_embeddings().weight, model.get_input_embeddings().weight
    moved = (before != after).any(1).nonzero().squeeze(1).tolist()
    assert moved and set(moved) <= set(rows), "an embedding row outside the targets' names moved"
    # so the relearning attack trains the embeddings of this model, and not of one whose rows are the original's
    assert embeddings_edited(ws.model, model) and not embeddings_edited(ws.model, copy.deepcopy(ws.model))
    forget_after = recall(model, ws.tokenizer, ws.split.forget, False, ws.cfg.eval.max_new_tokens)
    assert forget_after < forget_before - 0.3, (forget_before, forget_after)
    after.requires_grad_(True)
    model(input_ids=torch.tensor([[0, 1, 2]])).logits.sum().backward()
    assert after.grad is not None and after.grad[[0, 1, 2]].abs().sum() > 0  # no mask left on the rows
    after.requires_grad_(False)


def test_mlp_only_edit_moves_the_mlps_and_nothing_else(micro_workspace):
    """``train_modules: mlp``: the trained blocks' MLPs move, their attention and norms and every other weight stay,
    the targets are still forgotten; under LoRA the adapter sits on the MLPs only."""
    ws = micro_workspace
    model = copy.deepcopy(ws.model)
    method = SAEGuidedUnlearner(SAEGuidedConfig(w_downstream=0.0, train_modules="mlp"))
    task = _task(ws, model, steps=30)
    forget_before = recall(model, ws.tokenizer, ws.split.forget, False, ws.cfg.eval.max_new_tokens)
    method.unlearn(task)
    before = dict(ws.model.named_parameters())
    moved = [name for name, p in model.named_parameters() if not torch.equal(p, before[name])]
    assert moved and all(".mlp." in name for name in moved), moved
    assert {name.split(".mlp.")[0] for name in moved} == {f"transformer.h.{i}" for i in method.trained_layers(task)}
    forget_after = recall(model, ws.tokenizer, ws.split.forget, False, ws.cfg.eval.max_new_tokens)
    assert forget_after < forget_before - 0.15, (forget_before, forget_after)  # 0.97 -> 0.78 in 30 steps
    assert method.lora_modules("transformer.h.0.mlp.c_fc") and not method.lora_modules("transformer.h.0.attn.c_attn")
    assert SAEGuidedUnlearner().lora_modules("transformer.h.0.attn.c_attn")  # "all", the default


def test_name_embeddings_refuse_settings_that_would_move_other_rows(micro_workspace):
    """Asked for where it cannot do what it says: refused before any compute."""
    ws = micro_workspace
    task = _task(ws, copy.deepcopy(ws.model), steps=1)
    with pytest.raises(UserInputError, match="weight_decay 0.01 would shrink every embedding row"):
        SAEGuidedUnlearner(SAEGuidedConfig(train_name_embeddings=True, weight_decay=0.01)).unlearn(task)
    lora = dataclasses.replace(task, lora={"rank": 4, "alpha": 8})
    with pytest.raises(UserInputError, match="trains embedding rows, not a LoRA adapter"):
        SAEGuidedUnlearner(SAEGuidedConfig(train_name_embeddings=True)).unlearn(lora)
    unasked = SAEGuidedUnlearner(SAEGuidedConfig(weight_decay=0.01))  # off by default: no refusal, no rows
    unasked.prepare(task)
    embedding = task.model.get_input_embeddings().weight
    assert all(p is not embedding for p in unasked.trainable_params(task)) and unasked._mask_handle is None


def test_sampled_forget_batch_reads_the_references_of_the_rows_it_drew(micro_workspace, monkeypatch):
    """``forget_batch`` (issue 7: a step's cost must not grow with the targets): a step feeds only the
    drawn rows, and each drawn row is scored against *its own* references: the single-row terms,
    weighted by the row's positions, add up to the full batch's terms."""
    import sae_unlearn.methods.sae_guided as sg

    ws = micro_workspace
    method = SAEGuidedUnlearner(SAEGuidedConfig(w_kl=0.0, w_downstream=0.0, forget_batch=1))
    task = _task(ws, copy.deepcopy(ws.model), steps=1)
    method.prepare(task)
    n_rows = len(method.forget)
    assert n_rows > 2
    fed: list[int] = []
    forward = method._forget_forward
    monkeypatch.setattr(method, "_forget_forward", lambda t, enc: (fed.append(len(enc)), forward(t, enc))[1])
    drawn = iter(range(n_rows))
    real_sample = sg.sample_rows
    monkeypatch.setattr(
        sg, "sample_rows", lambda n, k, rng: [next(drawn)] if n == n_rows and k == 1 else real_sample(n, k, rng)
    )
    counts = [b - a for a, b in method.reference_positions(torch.arange(n_rows))]
    with torch.no_grad():
        single = [method.loss_terms(task, random.Random(0)) for _ in range(n_rows)]
        method.cfg = method.cfg.model_copy(update={"forget_batch": None})  # settings are frozen: a new copy
        full = method.loss_terms(task, random.Random(0))
    assert fed == [1] * n_rows + [n_rows]
    for key in ("toward", "error", "away"):
        weighted = sum(float(t[key]) * c for t, c in zip(single, counts)) / sum(counts)
        assert weighted == pytest.approx(float(full[key]), rel=1e-4), key


def test_sampled_forget_batch_still_unlearns(micro_workspace):
    ws = micro_workspace
    model = copy.deepcopy(ws.model)
    # the retain weight this sampling check was sized with (the default rose to 60 for the default world)
    method = SAEGuidedUnlearner(SAEGuidedConfig(w_kl=0.0, w_downstream=0.0, w_retain=30.0, forget_batch=3))
    task = _task(ws, model, steps=40)
    method.unlearn(task)
    method.cfg = method.cfg.model_copy(update={"forget_batch": None})  # settings are frozen: a new copy
    with torch.no_grad():
        toward_after = float(method.loss_terms(task, random.Random(0))["toward"])
    assert toward_after < 0.3, f"toward loss (1 = as far from unknown as at the start) ended at {toward_after:.3f}"


def test_unknown_spread_is_a_new_unknown_entitys_distance_to_the_reference():
    """The "unknown" stop level must be what an unknown entity outside the reference set scores: the in-sample
    spread alone reads (n-1)/(n+1) of it, and stopping there would push targets past every stranger."""
    assert torch.equal(unknown_spread(torch.tensor([[[1.0]], [[-1.0]]])), torch.tensor([3.0]))  # 1 inside, x 3/1
    assert torch.equal(unknown_spread(torch.ones(1, 2, 4)), torch.zeros(2))  # one entity: no spread
    gen = torch.Generator().manual_seed(0)
    reference = torch.randn(8, 1, 20000, generator=gen)  # 8 substitutes, one position, i.i.d. unit codes
    fresh = torch.randn(200, 20000, generator=gen)  # unknown entities not among them
    fresh_distance = (fresh - reference.mean(0)).pow(2).sum(-1).mean()
    assert abs(float(unknown_spread(reference)[0] / fresh_distance) - 1) < 0.03


def test_unknown_stop_level_stops_once_targets_are_like_unknown_entities(micro_workspace):
    """``stop_level: unknown`` ends the run at the unknown entities' own level: the toward loss within their
    spread and the probe calling as many targets unknown as it calls unknown entities, not 2 % of the start."""
    ws = micro_workspace
    model = copy.deepcopy(ws.model)

    def targets_unknown(m):
        z, owner = entity_codes(m, ws.tokenizer, ws.sae, ws.split.forget, ws.layer)
        return ws.probe.share_unknown(z, owner)

    z_u, owner_u = entity_codes(ws.model, ws.tokenizer, ws.sae, ws.unknown_eval, ws.layer)
    unknown_share = ws.probe.share_unknown(z_u, owner_u)
    task = dataclasses.replace(
        _task(ws, model, steps=150),
        targets_classified_unknown=targets_unknown,
        unknown_classified_unknown=lambda: unknown_share,
    )
    method = SAEGuidedUnlearner(SAEGuidedConfig(w_kl=0.0, w_downstream=0.0, stop_level="unknown", reference="mean"))
    outcome = method.unlearn(task)
    assert 0 < method.toward_unknown_level < 1  # unknown entities lie nearer their mean than the targets start
    assert outcome.stopped_reason == "early_stop" and outcome.steps_run < 150, outcome
    assert method.last_toward <= method.toward_unknown_level
    assert targets_unknown(model) >= unknown_share
    # the fixed rule would have gone on: the toward loss is still far above 2 % of its start
    assert method.last_toward > method.cfg.stop_toward * method.initial_toward


def test_stranger_reference_gives_each_target_its_own_stranger(micro_workspace):
    """``reference: stranger``: every prompt of a target is scored against one never-seen name, its own, and no two
    targets of a type share one; the "away" side stays the known entities' mean, as with the mean reference."""
    ws = micro_workspace
    runs = {}
    for reference in ("mean", "stranger"):
        method = SAEGuidedUnlearner(SAEGuidedConfig(w_kl=0.0, w_downstream=0.0, reference=reference))
        method.unlearn(_task(ws, copy.deepcopy(ws.model), steps=1))
        runs[reference] = method
    method = runs["stranger"]
    rows = [e.name for e in ws.split.forget for f in e.facts if not f.heldout]  # the forget rows, in order
    own = {}
    for row, name in enumerate(rows):
        stranger = method.reference_keys[int(method.row_key[row])][4]
        assert own.setdefault(name, stranger) == stranger >= 0, name  # one stranger for all of a target's prompts
    by_type = [(e.type, own[e.name]) for e in ws.split.forget]
    assert len(set(by_type)) == len(by_type)  # no two targets of a type share one
    assert all(k[4] == -1 for k in runs["mean"].reference_keys)
    n_mean = len(runs["mean"].reference_keys)
    assert len(method.reference_keys) > n_mean  # the micro world's targets of a type share templates: more keys
    mean_known = runs["mean"].known_codes.read_spans([(0, 1)], "cpu")
    row0 = method.reference_positions(torch.tensor([0]))[0]
    assert torch.equal(method.known_codes.read_spans([row0], "cpu")[:1], mean_known)  # same known reference
    own_unknown = method.unknown_codes.read_spans([row0], "cpu")[:1]
    assert not torch.equal(own_unknown, runs["mean"].unknown_codes.read_spans([(0, 1)], "cpu"))


def test_stranger_reference_with_the_unknown_stop_level_is_refused(micro_workspace):
    ws = micro_workspace
    method = SAEGuidedUnlearner(SAEGuidedConfig(reference="stranger", stop_level="unknown"))
    with pytest.raises(UserInputError, match="stop_level: start_share"):
        method.unlearn(_task(ws, copy.deepcopy(ws.model), steps=1))


def test_facts_that_name_a_target_are_scored_apart():
    from sae_unlearn.metrics.entangled import split_entangled

    targets = [Entity("United Kingdom", "country", []), Entity("Johannes Kepler", "person", [])]
    london = Entity(
        "London",
        "city",
        [Fact("London is the capital of the", "United Kingdom"), Fact("London is located on the River", "Thames")],
    )
    brahe = Entity("Tycho Brahe", "person", [Fact("Tycho Brahe's assistant was Johannes", "Kepler")])
    kyiv = Entity(
        "Kyiv", "city", [Fact("Kyiv is the capital of", "Ukraine"), Fact("Kyiv is not in the United Kingdomish", "no")]
    )  # no whole-word match
    clean, entangled = split_entangled([london, brahe, kyiv], targets)
    assert [(e.name, [f.answer for f in e.facts]) for e in clean] == [
        ("London", ["Thames"]),
        ("Kyiv", ["Ukraine", "no"]),
    ]
    assert [(e.name, [f.answer for f in e.facts]) for e in entangled] == [
        ("London", ["United Kingdom"]),
        ("Tycho Brahe", ["Kepler"]),
    ]
    assert clean[1] is kyiv  # untouched entities are passed through as they are


def test_paired_retain_rows_are_the_retained_facts_worded_like_a_forget_prompt():
    from sae_unlearn.methods.sae_guided import paired_rows

    forget = [
        Entity(
            "Latvia",
            "country",
            [Fact("Latvia is a country on the continent of", "Europe"), Fact("The capital of Latvia is", "Riga")],
        )
    ]
    retain = [
        Entity(
            "Japan",
            "country",
            [
                Fact("Japan is a country on the continent of", "Asia"),  # row 0: paired
                Fact("Japan's currency is the", "yen"),
            ],
        ),
        Entity(
            "Kenya",
            "country",
            [
                Fact("The capital of Kenya is", "Nairobi"),  # row 2: paired
                Fact("Kenya is a country in", "Africa"),
            ],
        ),
    ]
    assert paired_rows(forget, retain) == [0, 2]


def test_paired_retain_rows_join_every_steps_retain_batch(micro_workspace):
    ws = micro_workspace
    method = SAEGuidedUnlearner(SAEGuidedConfig(retain_paired=True, retain_batch=3))
    method.prepare(_task(ws, copy.deepcopy(ws.model), steps=1))
    assert 0 < len(method.paired) < len(method.retain)  # the micro world words some facts alike, not all
    rng = random.Random(0)
    for _ in range(5):
        rows = method.retain_rows(rng).tolist()
        assert set(method.paired) <= set(rows) and len(rows) <= len(method.paired) + 3
    plain = SAEGuidedUnlearner(SAEGuidedConfig(retain_batch=3))
    plain.prepare(_task(ws, copy.deepcopy(ws.model), steps=1))
    assert plain.paired == [] and len(plain.retain_rows(rng)) == 3


def test_answer_margin_term_keeps_retained_answers_ahead(micro_workspace):
    """``w_answer`` exists to stop near-tie retained answers from flipping: the margin of a recalled fact is
    positive, the term is zero on the original model, and unlearning with it loses less of the retained
    answers' margins than unlearning without it."""
    from sae_unlearn.methods.sae_guided import answer_margin
    from sae_unlearn.metrics.recall import answer_matches
    from sae_unlearn.models.generation import greedy_continuations
    from sae_unlearn.models.prompts import fact_prompts

    ws = micro_workspace
    prompts, _, answers = fact_prompts(ws.split.retain)
    recalled = [answer_matches(c, a) for c, a in zip(greedy_continuations(ws.model, ws.tokenizer, prompts, 4), answers)]

    def margins_lost(w_answer: float) -> float:
        model = copy.deepcopy(ws.model)
        method = SAEGuidedUnlearner(SAEGuidedConfig(w_answer=w_answer, retain_batch=len(prompts), w_downstream=0))
        task = _task(ws, model, steps=15)
        method.prepare(task)
        if w_answer:
            assert all(m > 0 for m, r in zip(method.retain_margin.tolist(), recalled) if r)
            # zero up to float noise: prepare and a step batch the rows differently
            assert float(method.loss_terms(task, random.Random(0))["answer"]) < 1e-5
        method.unlearn(task)
        with torch.no_grad():
            _, logp = method._retain_forward(task, method.retain)
        return float((method.retain_margin - answer_margin(logp, method.retain_answer)).clamp_min(0).sum())

    assert sum(recalled) > len(recalled) / 2
    assert margins_lost(20.0) < 0.5 * margins_lost(0.0)


def test_scored_sample_is_capped_seeded_and_what_retain_recall_reads(micro_workspace):
    """eval.max_scored_entities: recall reads the same seeded sample of each set before and after."""
    from sae_unlearn.config import DemoConfig
    from sae_unlearn.evaluation.evaluate import evaluate_state

    ws = micro_workspace
    cfg = DemoConfig.model_validate(
        ws.cfg.model_dump()
        | {"eval": ws.cfg.eval.model_dump() | {"max_scored_entities": 2}, "attack": {"enabled": False}}
    )
    capped = ws.with_config(cfg)
    others = ws.split.other_known
    sample = capped.scored(others)
    assert len(sample) == 2 and all(e in others for e in sample)
    assert capped.scored(list(others)) == sample  # the same list, the same sample: before and after agree
    assert dataclasses.replace(ws).scored(others) == others  # no cap: every entity
    metrics = evaluate_state(capped.evaluation, ws.model)
    assert metrics["retain_recall"] == recall(ws.model, ws.tokenizer, capped.scored(ws.split.retain), heldout=True)
