"""GradDiff (Liu et al. 2022; open-unlearning ``GradDiff``): gradient ascent on the forget facts plus
gradient descent (LM loss) on the retain facts, equally weighted."""

from __future__ import annotations

import random

import torch

from sae_unlearn.methods.base import UnlearnTask
from sae_unlearn.methods.gradient_ascent import GradientAscentConfig, GradientAscentUnlearner
from sae_unlearn.methods.lm_losses import answer_nll
from sae_unlearn.methods.registry import register_method


class GradDiffConfig(GradientAscentConfig):
    retain_weight: float = 1.0


@register_method
class GradDiffUnlearner(GradientAscentUnlearner):
    name = "grad_diff"
    config_cls = GradDiffConfig

    def loss(self, task: UnlearnTask, step: int, rng: random.Random) -> dict[str, torch.Tensor]:
        forget = answer_nll(task.model, self.forget.rows(self._rows(len(self.forget), rng)))
        retain = answer_nll(task.model, self.retain.rows(self._rows(len(self.retain), rng)))
        return {"forget": -forget, "retain": self.cfg.retain_weight * retain}
