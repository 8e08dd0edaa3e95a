"""GradDiff (Liu et al. 2022; open-unlearning ``GradDiff``): gradient ascent on the forget facts plus
gradient descent on the retain facts (LM loss, or KL to the original model: ``retain_loss``), equally weighted."""

from __future__ import annotations

import random

import torch

from sae_unlearn.methods.base import UnlearnTask
from sae_unlearn.methods.lm_losses import answer_nll
from sae_unlearn.methods.registry import register_method
from sae_unlearn.methods.retain_terms import RetainTermConfig, RetainTermUnlearner


class GradDiffConfig(RetainTermConfig):
    """open-unlearning's configs/trainer/GradDiff.yaml: gamma 1 (the forget term), alpha 1, NLL retain."""


@register_method
class GradDiffUnlearner(RetainTermUnlearner):
    name = "grad_diff"
    config_cls = GradDiffConfig

    def loss(self, task: UnlearnTask, step: int, rng: random.Random) -> dict[str, torch.Tensor]:
        forget = answer_nll(task.model, self.forget.rows(self._rows(len(self.forget), rng)))
        return {"forget": -forget, "retain": self.retain_term(task, rng)}
