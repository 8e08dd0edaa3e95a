"""Gradient ascent on the forget facts (the classic baseline, e.g. Jang et al. 2023; open-unlearning
``GradAscent``): maximise the LM loss of the forget answers. No retain term, so it tends to collapse."""

from __future__ import annotations

import random

import torch

from sae_unlearn.methods.base import GradientUnlearner, UnlearnTask, sample_rows
from sae_unlearn.methods.lm_losses import answer_nll, encode_fact_answers
from sae_unlearn.methods.options import FloorStopOptions
from sae_unlearn.methods.registry import register_method
from sae_unlearn.models.layers import model_device, num_layers


class GradientAscentConfig(FloorStopOptions):
    """Gradient ascent on the forget facts' answers, full weights (open-unlearning's GradAscent)."""


@register_method
class GradientAscentUnlearner(GradientUnlearner):
    name = "gradient_ascent"
    config_cls = GradientAscentConfig

    def trained_layers(self, task: UnlearnTask) -> list[int]:
        return list(range(num_layers(task.model)))  # full fine-tuning, as in open-unlearning

    def prepare(self, task: UnlearnTask) -> None:
        device = model_device(task.model)
        self.forget = encode_fact_answers(task.tokenizer, task.forget_facts, device)
        self.retain = encode_fact_answers(task.tokenizer, task.split.retain, device)

    def _rows(self, n: int, rng: random.Random) -> torch.Tensor:
        return torch.tensor(sample_rows(n, self.cfg.batch_size, rng))

    def loss(self, task: UnlearnTask, step: int, rng: random.Random) -> dict[str, torch.Tensor]:
        return {"forget": -answer_nll(task.model, self.forget.rows(self._rows(len(self.forget), rng)))}
