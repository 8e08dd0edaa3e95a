"""The retain term of the baselines that pair a forget loss with one: NLL on the retained facts (open-unlearning's
default, ``retain_loss_type: NLL``), or KL to the original model on the same rows (``retain_loss: kl``, their
``retain_loss_type: KL`` of GradDiff, NPO and DPO: src/trainer/unlearn/grad_diff.py at d3d7cf9). Why both: NLL
keeps the retained answers, KL keeps the whole next-token distribution on those sentences, which the NPO paper
found gentler on utility; the equal tuning budget (issue 23) may pick either."""

from __future__ import annotations

import copy
import random
from typing import Literal

import torch
from pydantic import Field

from sae_unlearn.methods.base import UnlearnTask
from sae_unlearn.methods.gradient_ascent import GradientAscentConfig, GradientAscentUnlearner
from sae_unlearn.methods.lm_losses import answer_nll, retain_kl


class RetainTermConfig(GradientAscentConfig):
    retain_weight: float = Field(1.0, ge=0)  # open-unlearning's alpha
    retain_loss: Literal["nll", "kl"] = "nll"


class RetainTermUnlearner(GradientAscentUnlearner):
    """Gradient ascent's data and loop plus ``retain_term``; not a method of its own (not registered)."""

    config_cls = RetainTermConfig

    def prepare(self, task: UnlearnTask) -> None:
        super().prepare(task)
        # KL needs the original model beside the edited one: a frozen copy, made before any update (and before
        # a LoRA adapter wraps the model), as open-unlearning's ``_prepare_ref_model`` does
        self.reference = None
        if self.cfg.retain_loss == "kl":
            self.reference = copy.deepcopy(task.model).train(False).requires_grad_(False)

    def retain_term(self, task: UnlearnTask, rng: random.Random) -> torch.Tensor:
        batch = self.retain.rows(self._rows(len(self.retain), rng))
        if self.reference is not None:
            return self.cfg.retain_weight * retain_kl(task.model, self.reference, batch)
        return self.cfg.retain_weight * answer_nll(task.model, batch)
