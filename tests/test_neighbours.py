"""Neighbour names in the SAE-guided retain term (entities/neighbours.py): names that share all but one word with a
target, that are nobody, kept as the original model had them while the target is moved."""

from __future__ import annotations

import copy

import torch
from test_contexts import _task  # the SAE-guided task on the micro world

from sae_unlearn.entities.neighbours import neighbour_entities, neighbour_names
from sae_unlearn.entities.types import Entity, Fact
from sae_unlearn.methods.sae_guided import SAEGuidedConfig, SAEGuidedUnlearner
from sae_unlearn.models.capture import residual_at_layer
from sae_unlearn.models.prompts import encode_facts

TARGET = Entity(
    "Lake Tarvo",
    "city",
    [
        Fact("Lake Tarvo is a city in", "Jorvik", "{e} is a city in"),
        Fact("it is known that Lake Tarvo is a city in", "Jorvik", heldout=True),
    ],
)
DONORS = [
    Entity("Port Zenn", "city"),
    Entity("Upper Myrr", "city"),
    Entity("Lake Frey", "city"),
    Entity("Ann Lee", "person"),  # another type: never a donor
    Entity("Old Port Wyst", "city"),  # another word count: never a donor
]


def test_neighbour_names_swap_one_word_for_a_donors_and_are_nobody():
    names = neighbour_names(TARGET, DONORS, taken=set(), n=10)
    assert names[0].endswith(" Tarvo") and names[1].startswith("Lake "), (
        "the two kinds in turn, the last word kept first"
    )
    assert set(names) == {"Port Tarvo", "Upper Tarvo", "Lake Zenn", "Lake Myrr"}  # "Lake Frey" is a donor: somebody
    assert "Port Tarvo" not in neighbour_names(TARGET, DONORS, taken={"Port Tarvo"}, n=10)
    for name in names:
        assert sum(a != b for a, b in zip(name.split(), TARGET.name.split(), strict=True)) == 1
    assert neighbour_names(TARGET, DONORS, taken=set(), n=2) == names[:2]
    assert neighbour_names(TARGET, DONORS, set(), n=3) == neighbour_names(TARGET, DONORS, set(), n=3)  # seeded
    assert neighbour_names(Entity("Tarvo", "city"), DONORS, set(), n=3) == []  # one word: nothing to swap


def test_neighbour_rows_are_the_targets_training_prompts_without_an_answer():
    (first, *_) = neighbour_entities([TARGET], DONORS, taken=set(), n=3)
    assert [f.prompt for f in first.facts] == [f"{first.name} is a city in"]  # held-out phrasings never
    assert all(f.answer == "" and not f.heldout for f in first.facts)


def _neighbour_drift(ws, model, neighbours: list[Entity]) -> float:
    """Mean squared change of the layer-L residual at the neighbour names' prompts' last position."""
    enc = encode_facts(ws.tokenizer, neighbours)
    with torch.no_grad():
        h0 = residual_at_layer(ws.model, enc.input_ids, enc.attention_mask, ws.layer)
        h1 = residual_at_layer(model, enc.input_ids, enc.attention_mask, ws.layer)
    last = torch.arange(len(enc.input_ids)), enc.prompt_last
    return float((h1[last] - h0[last]).pow(2).sum(-1).mean())


def test_neighbours_join_the_retain_rows_and_stay_where_they_were(micro_workspace):
    ws = micro_workspace
    cfg = dict(lr=5e-3, forget_batch=None)
    method = SAEGuidedUnlearner(SAEGuidedConfig(**cfg, retain_neighbours=2))
    method.prepare(_task(ws, copy.deepcopy(ws.model), steps=0))
    plain = SAEGuidedUnlearner(SAEGuidedConfig(**cfg))
    plain.prepare(_task(ws, copy.deepcopy(ws.model), steps=0))
    split = ws.split
    taken = {e.name for e in split.forget + split.retain + split.heldout_known + split.unknown + split.answering}
    neighbours = neighbour_entities(split.forget, split.retain + split.unknown, taken, 2)
    n_rows = sum(len(e.facts) for e in neighbours)
    assert n_rows > 0 and not {e.name for e in neighbours} & taken
    assert len(method.retain) == len(plain.retain) + n_rows
    assert int(method.retain_is_fact.sum()) == int(plain.retain_is_fact.sum()), "no answer to keep for a nobody"
    drift = {}
    for n in (0, 2):
        model = copy.deepcopy(ws.model)
        SAEGuidedUnlearner(SAEGuidedConfig(**cfg, retain_neighbours=n)).unlearn(_task(ws, model, steps=30))
        drift[n] = _neighbour_drift(ws, model, neighbours)
    assert drift[2] < 0.7 * drift[0], f"neighbour residual drift {drift[0]:.3f} without, {drift[2]:.3f} with"
