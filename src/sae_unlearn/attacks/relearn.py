"""Relearning attack: fine-tune on some of a target's facts, then ask for the others.

Why: a method that only suppresses outputs leaves the knowledge in the weights, and a few gradient
steps on related data bring the rest back (Lynch et al. 2024, arXiv 2402.16835; Deeb & Roger 2024,
arXiv 2410.08827). Forgetting in the paper's sense means the attack recovers no more than it can
teach about an entity the model never saw: the same attack on unknown entities is the floor.
"""

from __future__ import annotations

import copy
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from sae_unlearn.entities.phrasings import relation_key
from sae_unlearn.entities.types import Entity, Fact
from sae_unlearn.methods.adapters import deterministic_train_mode
from sae_unlearn.methods.lm_losses import answer_nll, encode_fact_answers
from sae_unlearn.metrics.recall import recall
from sae_unlearn.models.layers import CausalLM, decoder_layers, model_device


def relation(entity: Entity, fact: Fact) -> str:
    """What a fact is about: its attribute, or (files without one) its prompt with the name blanked."""
    return relation_key(entity.name, fact)


def split_for_relearning(entity: Entity) -> tuple[Entity, Entity] | None:
    """(attack part, held-back part): the first half of the entity's relations (at least one) are
    taught, the rest are asked. None when the entity has a single relation (nothing to hold back)."""
    groups: dict[str, list[Fact]] = {}
    for fact in entity.facts:
        groups.setdefault(relation(entity, fact), []).append(fact)
    if len(groups) < 2:
        return None
    keys = list(groups)
    n_attack = max(1, len(keys) // 2)
    attack = [f for k in keys[:n_attack] for f in groups[k]]
    held = [f for k in keys[n_attack:] for f in groups[k]]
    return Entity(entity.name, entity.type, attack), Entity(entity.name, entity.type, held)


@dataclass
class RelearnResult:
    curve: list[dict]  # [{"step": s, "recall": r}], recall of the held-back facts during the attack
    n_entities: int  # entities that could be split (at least two relations)

    @property
    def recall_before(self) -> float:
        return self.curve[0]["recall"] if self.curve else float("nan")

    @property
    def recall_after(self) -> float:
        return self.curve[-1]["recall"] if self.curve else float("nan")

    @property
    def recall_best(self) -> float:
        """The most the attack brought back at any evaluated step: an attacker keeps the best checkpoint, and a
        rate that ends up damaging the model (Gemma-3-270M, docs/attacks.md) can still recover facts midway."""
        return max((point["recall"] for point in self.curve), default=float("nan"))


def relearn_attack(
    model: nn.Module,
    tokenizer,
    entities: list[Entity],
    steps: int,
    lr: float,
    eval_every: int,
    heldout: bool | None,
    max_new_tokens: int,
    seed: int = 0,
    context: Callable[[nn.Module], AbstractContextManager] | None = None,
    embeddings: bool = False,
) -> RelearnResult:
    """Full-batch Adam on every decoder block of a copy of ``model`` (the attacker owns the weights), and with
    ``embeddings`` on its input embeddings too (tied to the output head where the model ties them), LM loss on the
    answers of the attack facts; recall of the held-back facts every ``eval_every`` steps. ``model`` is left
    untouched. ``context`` re-applies an inference-time edit (SAE clamping), which is part of the model under
    attack."""
    parts = [p for p in map(split_for_relearning, entities) if p is not None]
    if not parts:
        return RelearnResult([], 0)
    taught = [a for a, _ in parts]
    asked = [h for _, h in parts]
    # teach the training phrasings when the entity has them (the held-out ones stay unseen)
    teach_heldout = False if any(not f.heldout for e in taught for f in e.facts) else None
    attacked: CausalLM = copy.deepcopy(model)
    for p in attacked.parameters():
        p.requires_grad_(False)
    # every decoder block (the usual fine-tuning set), and the input embeddings where the method edited them
    params = [p for block in decoder_layers(attacked) for p in block.parameters()]
    if embeddings:
        params.append(attacked.get_input_embeddings().weight)
    for p in params:
        p.requires_grad_(True)
    torch.manual_seed(seed)
    batch = encode_fact_answers(tokenizer, taught, model_device(attacked), heldout=teach_heldout)
    opt = torch.optim.Adam(params, lr=lr)
    edit = context or (lambda _m: nullcontext())
    # step 0 asks ``model`` itself (the copy still equals it): a caller inside
    # ``reuse_greedy_continuations(model)`` has decoded those prompts already
    with edit(model):
        curve = [{"step": 0, "recall": recall(model, tokenizer, asked, heldout, max_new_tokens)}]
    with edit(attacked):
        for step in range(1, steps + 1):
            deterministic_train_mode(attacked)
            loss = answer_nll(attacked, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % eval_every == 0 or step == steps:
                attacked.train(False)
                curve.append({"step": step, "recall": recall(attacked, tokenizer, asked, heldout, max_new_tokens)})
    del attacked, opt
    return RelearnResult(curve, len(parts))


def embeddings_edited(original: CausalLM, model: CausalLM) -> bool:
    """Whether ``model``'s input embeddings differ from ``original``'s (SAE-guided's ``train_name_embeddings``):
    then the attack trains them too, since an attack on the blocks alone would leave the edit where it is.
    Unedited embeddings stay out of it, as in usual fine-tuning: training them too moved SAE-guided's relearned
    recall by -1.7 to +6.7 points on four synthetic worlds (floors within one fact), nothing on SmolLM2 (10 targets,
    the same curve), and costs 28 % more attack time there, which the demo's time budget cannot spare."""
    return not torch.equal(original.get_input_embeddings().weight, model.get_input_embeddings().weight)


def floor_entities(targets: list[Entity], unknown: list[Entity]) -> list[Entity]:
    """One unknown entity per target, of the target's type where one exists: the same attack, the
    same amount of data, on entities the model never knew."""
    out: list[Entity] = []
    used: set[str] = set()
    for target in targets:
        pool = [u for u in unknown if u.type == target.type and u.name not in used] or [
            u for u in unknown if u.name not in used
        ]
        if pool:
            out.append(pool[0])
            used.add(pool[0].name)
    return out
