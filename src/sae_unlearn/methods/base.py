"""The one interface every unlearning method implements, and the training loop they share.

A method receives an ``UnlearnTask`` (a model to edit in place, the entity split, the SAE and the
selected latents, a step budget) and returns an ``UnlearnOutcome``. Adding a method is one module
plus one entry in ``methods/__init__.py``'s registry.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
from torch import nn
from tqdm.auto import tqdm

from sae_unlearn.entities.types import Entity, EntitySplit
from sae_unlearn.methods.adapters import (deterministic_train_mode, disable_gradient_checkpointing,
                                          enable_gradient_checkpointing, wrap_with_lora)
from sae_unlearn.models.layers import decoder_layers
from sae_unlearn.models.prompts import EncodedPrompts, encode_prompts


@dataclass
class UnlearnTask:
    model: nn.Module  # edited in place; the pipeline hands every method a fresh copy
    tokenizer: Any
    split: EntitySplit
    layer: int
    sae: Any  # sae_lens.SAE, frozen
    known_latents: list[int]
    unknown_latents: list[int]
    steps: int
    # Share of forget targets a known-vs-unknown probe fitted before unlearning calls unknown.
    targets_classified_unknown: Callable[[nn.Module], float] | None = None
    seed: int = 0
    progress: bool = True
    lora: dict | None = None  # {"rank": r, "alpha": a}: train a LoRA adapter on the trained layers
    gradient_checkpointing: bool = False


@dataclass
class UnlearnOutcome:
    steps_run: int
    stopped_reason: str  # "budget" | "early_stop" | "non_finite_loss" | "no_training"
    loss_history: list[float] = field(default_factory=list)
    message: str = ""
    # For inference-time methods (SAE clamping): wraps every evaluation forward pass.
    inference_context: Callable[[nn.Module], AbstractContextManager] | None = None
    inference_spec: dict | None = None  # saved beside the model so the hook can be re-applied

    def context(self, model: nn.Module) -> AbstractContextManager:
        return self.inference_context(model) if self.inference_context else nullcontext()


class Unlearner(ABC):
    name: ClassVar[str]

    @abstractmethod
    def unlearn(self, task: UnlearnTask) -> UnlearnOutcome: ...


def fact_prompts(entities: list[Entity], heldout: bool | None = False) -> tuple[list[str], list[str], list[str]]:
    """(prompts, entity names, answers) of the entities' facts; ``heldout=None`` takes all."""
    rows = [(f.prompt, e.name, f.answer) for e in entities for f in e.facts if heldout is None or f.heldout == heldout]
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def encode_facts(tokenizer, entities: list[Entity], heldout: bool | None = False) -> EncodedPrompts:
    prompts, names, _ = fact_prompts(entities, heldout)
    return encode_prompts(tokenizer, prompts, names)


def trainable_block_params(model: nn.Module, layers: list[int]) -> list[nn.Parameter]:
    """Freeze everything, then unfreeze the listed decoder blocks; returns what is trained."""
    for p in model.parameters():
        p.requires_grad_(False)
    blocks = decoder_layers(model)
    params = []
    for i in layers:
        for p in blocks[i].parameters():
            p.requires_grad_(True)
            params.append(p)
    return params


class GradientUnlearner(Unlearner):
    """Shared loop: Adam on chosen blocks, a step budget, early stopping, and NaN safety.

    A non-finite loss rolls the trained parameters back to the last good snapshot and halves the
    learning rate once; a second one stops the run, keeping the last good weights.
    """

    config_cls: ClassVar[type]  # a dataclass with at least ``lr`` and ``eval_every``

    def __init__(self, cfg=None):
        self.cfg = cfg or self.config_cls()

    @property
    def lr(self) -> float:
        return self.cfg.lr

    @property
    def eval_every(self) -> int:
        return self.cfg.eval_every

    def trained_layers(self, task: UnlearnTask) -> list[int]:
        return list(range(task.layer + 1))

    def trainable_params(self, task: UnlearnTask) -> list[nn.Parameter]:
        return trainable_block_params(task.model, self.trained_layers(task))

    def prepare(self, task: UnlearnTask) -> None:
        """Precompute whatever the loss needs from the original model (before any update)."""

    @abstractmethod
    def loss(self, task: UnlearnTask, step: int, rng: random.Random) -> torch.Tensor: ...

    def should_stop(self, task: UnlearnTask, step: int) -> bool:
        return False

    def unlearn(self, task: UnlearnTask) -> UnlearnOutcome:
        torch.manual_seed(task.seed)
        rng = random.Random(task.seed)
        self.prepare(task)
        if task.lora is not None:  # task.model becomes the peft wrapper; the pipeline keeps that object
            task.model = wrap_with_lora(task.model, self.trained_layers(task), task.lora["rank"], task.lora["alpha"], task.seed)
            params = [p for p in task.model.parameters() if p.requires_grad]
        else:
            params = self.trainable_params(task)
        if task.gradient_checkpointing:
            enable_gradient_checkpointing(task.model)
        opt = torch.optim.Adam(params, lr=self.lr)
        snapshot = [p.detach().clone() for p in params]
        history: list[float] = []
        lowered = False
        reason, message = "budget", ""
        deterministic_train_mode(task.model)  # no dropout: the edit must be deterministic for a given seed
        bar = tqdm(range(task.steps), desc=f"unlearn [{self.name}]", disable=not task.progress)
        step = 0
        for step in bar:
            loss = self.loss(task, step, rng)
            if not torch.isfinite(loss):
                with torch.no_grad():
                    for p, s in zip(params, snapshot):
                        p.copy_(s)
                if lowered:
                    reason = "non_finite_loss"
                    message = (f"loss became non-finite twice (step {step}); stopped and kept the last good "
                               "weights. Lower the learning rate.")
                    break
                lowered = True
                for group in opt.param_groups:
                    group["lr"] /= 2
                opt = torch.optim.Adam(params, lr=opt.param_groups[0]["lr"])
                message = f"loss became non-finite at step {step}; rolled back and halved the learning rate."
                continue
            with torch.no_grad():  # these weights gave a finite loss: the last good ones
                for p, s in zip(params, snapshot):
                    s.copy_(p)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            history.append(float(loss.detach()))
            bar.set_postfix(loss=f"{history[-1]:.4f}")
            if (step + 1) % self.eval_every == 0 and self.should_stop(task, step):
                reason = "early_stop"
                break
        bar.close()
        task.model.train(False)
        if task.gradient_checkpointing:
            disable_gradient_checkpointing(task.model)
        for p in task.model.parameters():
            p.requires_grad_(False)
        steps_run = len(history)
        return UnlearnOutcome(steps_run=steps_run, stopped_reason=reason, loss_history=history, message=message)


def sample_rows(n: int, k: int, rng: random.Random) -> list[int]:
    return list(range(n)) if k >= n else rng.sample(range(n), k)
