"""The optimiser and learning-rate schedule every gradient method trains with (methods/base.GradientUnlearner).

The schedule's shape is ``transformers``' (the HF Trainer's, which open-unlearning's trainers run under), read
as a pure function of the step: the loop sets each step's rate from the step number, so a resumed run and the
rollback after a non-finite loss (which halves the base rate) need no scheduler state of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import get_args

import torch
from torch import nn
from transformers import get_scheduler

from sae_unlearn.methods.options import LRSchedule

SCHEDULES: tuple[str, ...] = get_args(LRSchedule)


def lr_multiplier(schedule: str, warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """Step -> factor on the base learning rate: linear warmup over ``warmup_steps``, then ``schedule``
    ("constant", or "linear"/"cosine" decay to 0 at ``total_steps``)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"lr_schedule={schedule!r}; allowed: {', '.join(SCHEDULES)}")
    name = "constant_with_warmup" if schedule == "constant" else schedule
    probe = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)  # only its schedule's factor is read
    scheduler = get_scheduler(
        name, probe, num_warmup_steps=warmup_steps, num_training_steps=max(total_steps, warmup_steps + 1)
    )
    return scheduler.lr_lambdas[0]  # type: ignore[attr-defined]  # every schedule above is a LambdaLR


def make_optimizer(params: list[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW (with ``weight_decay`` 0 it is Adam, step for step)."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr
