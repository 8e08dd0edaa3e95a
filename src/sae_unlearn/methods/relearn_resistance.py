"""Relearning resistance as a training term: after a simulated relearning step the targets must still be strangers.

Tamper-resistant training (TAR, Tamirisa et al. 2024; MLAC, Henderson et al. 2023) trains against a simulated
fine-tuning attack; this is its one-step, first-order form (as first-order MAML): one normalised gradient step that
teaches some of the targets' facts, then the loss on the facts it did not teach, with its gradient taken at the
adapted weights. Written here because no maintained library offers it for a custom objective (``torch.func``
does the functional forward).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import torch
from torch import nn


def split_facts(n: int, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    """A random half of ``n`` facts to teach and the other half to check (the relearning attack's shape: some of
    a target's facts taught, the others asked)."""
    order = list(range(n))
    rng.shuffle(order)
    return torch.tensor(order[: n // 2]), torch.tensor(order[n // 2 :])


def adapted_weights(
    model: nn.Module,
    params: list[nn.Parameter],
    teach_loss: Callable[[], torch.Tensor],
    radius: float,
    sum_across: Callable[[list[torch.Tensor]], None] = lambda grads: None,
) -> dict[str, torch.Tensor]:
    """The trained weights after one gradient step on ``teach_loss``, ``radius`` long in parameter norm (a
    normalised step: its size does not depend on how steep the loss is), by name, for
    ``torch.func.functional_call``. The step enters as a constant (no second-order graph), so a loss computed
    with these weights has, with respect to ``params``, the adapted model's gradient. With the rows split over
    processes, ``teach_loss`` is this process's share of the sum and ``sum_across`` adds the shares' gradients,
    so every process takes the one-process step (``parallel.sum_across``)."""
    loss = teach_loss()
    found = torch.autograd.grad(loss, params, allow_unused=True) if loss.requires_grad else [None] * len(params)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, found)]
    sum_across(grads)
    norm = torch.stack([g.pow(2).sum() for g in grads]).sum().sqrt().clamp_min(1e-12)
    names = {id(p): name for name, p in model.named_parameters()}
    return {names[id(p)]: p - (radius / norm) * g for p, g in zip(params, grads)}


def last_logits(model: nn.Module, weights: dict[str, torch.Tensor], input_ids, attention_mask, last) -> torch.Tensor:
    """The logits at each row's position ``last`` of ``model`` run with ``weights`` in place of its own."""
    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": False}
    logits = torch.func.functional_call(model, weights, (), kwargs).logits
    return logits[torch.arange(len(input_ids), device=logits.device), last.to(logits.device)]
