"""Refusal baselines (issue 23): train the model to answer its targets' fact prompts with "I don't know"-style
refusals. For entities this is the natural suppression baseline: the output says "unknown" whatever the model
still holds inside, which is what the SAE-guided method claims to go beyond.

- ``idk_nll``: NLL of a refusal after each forget prompt, plus the retain term (TOFU's "IDK" fine-tuning, Maini
  et al. 2024; "IdkNLL" in later comparisons).
- ``idk_dpo``: DPO (Rafailov et al. 2023) with the refusal preferred over the true answer, plus the retain term:
  open-unlearning's DPO trainer on TOFU_QA_forget_idk (src/trainer/unlearn/dpo.py, configs/trainer/DPO.yaml at
  d3d7cf9: beta 0.1, gamma 1, alpha 1, NLL retain). The reference model is the original one; its log-likelihoods
  of both answers are fixed, so they are computed once (the reference runs it every step).

Deviation: each forget fact gets one refusal, drawn once with the run's seed; the reference's dataset draws anew
each time a row is read. Refusals the tokenizer cannot write (the synthetic world's word-level vocabulary) are
replaced by ones in the world's words.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from pydantic import Field

from sae_unlearn.entities.vocabulary import in_vocabulary
from sae_unlearn.errors import UserInputError
from sae_unlearn.methods.base import UnlearnTask
from sae_unlearn.methods.lm_losses import FactBatch, answer_nll, encode_answers, sequence_logprob
from sae_unlearn.methods.registry import register_method
from sae_unlearn.methods.retain_terms import RetainTermConfig, RetainTermUnlearner
from sae_unlearn.models.layers import model_device
from sae_unlearn.models.prompts import fact_prompts

# Written for this project (open-unlearning's data/idk.jsonl is not in its repository snapshot). The world's use
# only words its corpus has and end as its sentences do (" ."), so a refusal is followed by the end of text.
REFUSALS = (
    "I don't know.",
    "I'm not sure.",
    "I have no idea.",
    "I cannot say.",
    "I don't have that information.",
    "That is not something I know.",
    "Sorry, I can't answer that.",
)
WORLD_REFUSALS = ("nothing is known .", "it is not known .", "that is not known to us .")


def writable_refusals(tokenizer) -> list[str]:
    """The refusals ``tokenizer`` can write (entities/vocabulary.in_vocabulary)."""
    usable = list(in_vocabulary(tokenizer, REFUSALS, WORLD_REFUSALS))
    if not usable:
        raise UserInputError(
            "The tokenizer cannot write any of the refusals the idk methods train on (each has an unknown token); "
            "choose another method for this model."
        )
    return usable


class IdkConfig(RetainTermConfig):
    forget_weight: float = Field(1.0, ge=0)  # open-unlearning's gamma


class _RefusalUnlearner(RetainTermUnlearner):
    """Gradient ascent's forget rows, each paired with a refusal (``self.refusal``, row for row)."""

    def prepare(self, task: UnlearnTask) -> None:
        super().prepare(task)
        prompts, _, _ = fact_prompts(task.forget_facts, False)
        choices = writable_refusals(task.tokenizer)
        draw = random.Random(task.seed)
        answers = [draw.choice(choices) for _ in prompts]
        self.refusal: FactBatch = encode_answers(task.tokenizer, prompts, answers, model_device(task.model))


@register_method
class IdkNLLUnlearner(_RefusalUnlearner):
    name = "idk_nll"
    config_cls = IdkConfig

    def loss(self, task: UnlearnTask, step: int, rng: random.Random) -> dict[str, torch.Tensor]:
        refusal = answer_nll(task.model, self.refusal.rows(self._rows(len(self.refusal), rng)))
        return {"refusal": self.cfg.forget_weight * refusal, "retain": self.retain_term(task, rng)}


class IdkDPOConfig(IdkConfig):
    beta: float = Field(0.1, gt=0)


@register_method
class IdkDPOUnlearner(_RefusalUnlearner):
    name = "idk_dpo"
    config_cls = IdkDPOConfig

    def prepare(self, task: UnlearnTask) -> None:
        super().prepare(task)
        with torch.no_grad():
            self.ref_refusal = sequence_logprob(task.model, self.refusal)
            self.ref_answer = sequence_logprob(task.model, self.forget)

    def loss(self, task: UnlearnTask, step: int, rng: random.Random) -> dict[str, torch.Tensor]:
        idx = self._rows(len(self.forget), rng)
        preferred = sequence_logprob(task.model, self.refusal.rows(idx)) - self.ref_refusal[idx]
        rejected = sequence_logprob(task.model, self.forget.rows(idx)) - self.ref_answer[idx]
        dpo = -(2.0 / self.cfg.beta) * F.logsigmoid(self.cfg.beta * (preferred - rejected)).mean()
        return {"dpo": self.cfg.forget_weight * dpo, "retain": self.retain_term(task, rng)}
