"""NPO (Zhang et al. 2024, "Negative Preference Optimization", arXiv 2404.05868), with a retain term
(their NPO+RT):  L = (2/beta) E_f[ log(1 + (pi_theta(y|x) / pi_ref(y|x))^beta) ] + lambda E_r[NLL],
beta = 0.1 as in the paper; pi_ref is the model before unlearning."""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F

from sae_unlearn.methods.base import UnlearnTask
from sae_unlearn.methods.lm_losses import sequence_logprob
from sae_unlearn.methods.registry import register_method
from sae_unlearn.methods.retain_terms import RetainTermConfig, RetainTermUnlearner


class NPOConfig(RetainTermConfig):
    beta: float = 0.1


@register_method
class NPOUnlearner(RetainTermUnlearner):
    name = "npo"
    config_cls = NPOConfig

    def prepare(self, task: UnlearnTask) -> None:
        super().prepare(task)
        with torch.no_grad():
            self.ref_logp = sequence_logprob(task.model, self.forget)

    def loss(self, task: UnlearnTask, step: int, rng: random.Random) -> dict[str, torch.Tensor]:
        idx = self._rows(len(self.forget), rng)
        log_ratio = sequence_logprob(task.model, self.forget.rows(idx)) - self.ref_logp[idx]
        # log(1 + exp(beta * log_ratio)) = softplus, numerically stable
        npo = (2.0 / self.cfg.beta) * F.softplus(self.cfg.beta * log_ratio).mean()
        return {"npo": npo, "retain": self.retain_term(task, rng)}
