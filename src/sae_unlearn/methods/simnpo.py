"""SimNPO (Fan et al. 2024, "Simplicity Prevails: Rethinking Negative Preference Optimization for LLM
Unlearning", arXiv 2410.07163): NPO without the reference model, on the answer's length-normalised likelihood,
with a margin ``delta``:  L = gamma * (-(2/beta) E_f[ log sigma(beta * (NLL(y|x) / |y| - delta)) ])
+ alpha * E_r[NLL]. Why a method of its own: NPO's reference ratio lets short answers (most entity facts are
one or two tokens) dominate the forget term; SimNPO weighs every answer by its length.

Defaults are open-unlearning's (configs/trainer/SimNPO.yaml): beta 4.5, delta 0, gamma 0.125, alpha 1, NLL retain.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from pydantic import Field

from sae_unlearn.methods.base import UnlearnTask
from sae_unlearn.methods.lm_losses import sequence_logprob
from sae_unlearn.methods.registry import register_method
from sae_unlearn.methods.retain_terms import RetainTermConfig, RetainTermUnlearner


class SimNPOConfig(RetainTermConfig):
    beta: float = Field(4.5, gt=0)
    delta: float = 0.0  # margin on the length-normalised NLL ("gamma" in the SimNPO paper)
    forget_weight: float = Field(0.125, ge=0)  # open-unlearning's gamma


@register_method
class SimNPOUnlearner(RetainTermUnlearner):
    name = "simnpo"
    config_cls = SimNPOConfig

    def loss(self, task: UnlearnTask, step: int, rng: random.Random) -> dict[str, torch.Tensor]:
        batch = self.forget.rows(self._rows(len(self.forget), rng))
        nll = -sequence_logprob(task.model, batch) / batch.answer_lengths().clamp_min(1)
        simnpo = -(2.0 / self.cfg.beta) * F.logsigmoid(self.cfg.beta * (nll - self.cfg.delta)).mean()
        return {"simnpo": self.cfg.forget_weight * simnpo, "retain": self.retain_term(task, rng)}
