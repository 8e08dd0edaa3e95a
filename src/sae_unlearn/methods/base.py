"""The one interface every unlearning method implements, and the training loop they share.

A method receives an ``UnlearnTask`` (a model to edit in place, the entity split, the SAE and the
selected latents, a step budget) and returns an ``UnlearnOutcome``. Adding a method is one module
with a class decorated ``@register_method`` (``methods/registry.py``).

A little over our ~300-line rule on purpose: the loop, its stop rule with the best-checkpoint rollback, the LoRA
and FSDP wrapping and the checkpoint resume share one running state; split apart, each would reach into the others.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, cast

import torch
from torch import nn
from tqdm.auto import tqdm

from sae_unlearn import parallel
from sae_unlearn.entities.types import Entity, EntitySplit
from sae_unlearn.errors import UserInputError
from sae_unlearn.methods import sharding
from sae_unlearn.methods.adapters import (
    deterministic_train_mode,
    disable_gradient_checkpointing,
    enable_gradient_checkpointing,
    wrap_with_lora,
)
from sae_unlearn.methods.checkpoint import Checkpointer, LoopState
from sae_unlearn.methods.schedule import lr_multiplier, make_optimizer, set_lr
from sae_unlearn.models.layers import decoder_layers


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
    # The same probe's share for the unknown entities, on the original model: the level "like a stranger" reaches.
    unknown_classified_unknown: Callable[[], float] | None = None
    # How much more often the targets' training prompts are recalled than with unknown names in them.
    forget_gap_to_floor: Callable[[nn.Module], float] | None = None
    seed: int = 0
    progress: bool = True
    lora: dict | None = None  # {"rank": r, "alpha": a}: train a LoRA adapter on the trained layers
    gradient_checkpointing: bool = False
    checkpointer: Checkpointer | None = None  # periodic crash-safe state; resumes when its ``resume`` is set

    @property
    def forget_facts(self) -> list[Entity]:
        """Everything a method forgets: the targets' facts and the other entities' facts whose answer is a target
        (``split.answering``; empty with ``unlearn.reverse_facts: false``), the same rows for every method."""
        return self.split.forget + self.split.answering


@dataclass
class UnlearnOutcome:
    steps_run: int
    stopped_reason: str  # "budget" | "early_stop" | "non_finite_loss" | "no_training"
    loss_history: list[float] = field(default_factory=list)
    # the loss's named, weighted terms per step (their sum is loss_history): which term dominates a run
    loss_terms: dict[str, list[float]] = field(default_factory=dict)
    message: str = ""
    best_step: int | None = None  # the budget ran out and an earlier check's weights were kept (``_keep_best``)
    # For inference-time methods (SAE clamping): wraps every evaluation forward pass.
    inference_context: Callable[[nn.Module], AbstractContextManager] | None = None
    inference_spec: dict | None = None  # saved beside the model so the hook can be re-applied

    def context(self, model: nn.Module) -> AbstractContextManager:
        return self.inference_context(model) if self.inference_context else nullcontext()


class Unlearner(ABC):
    name: ClassVar[str]
    config_cls: ClassVar[type]  # its typed settings (methods/options.py)

    def __init__(self, cfg: Any = None):
        self.cfg = cfg if cfg is not None else self.config_cls()

    @abstractmethod
    def unlearn(self, task: UnlearnTask) -> UnlearnOutcome: ...


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


def trainable_mlp_params(
    model: nn.Module, layers: list[int], method: str, pick: Callable[[str], bool] | None = None
) -> list[nn.Parameter]:
    """Freeze everything, then unfreeze the MLPs of the listed blocks: the weights of the modules whose name
    (``block.mlp....``) ``pick`` accepts (RMU's down-projections), or the whole MLP where ``pick`` is None or accepts
    none (an architecture that names its projections otherwise). A block without ``.mlp`` is an error naming it."""
    trainable_block_params(model, [])
    params = []
    for i in layers:
        block = decoder_layers(model)[i]
        mlp = getattr(block, "mlp", None)
        if mlp is None:
            raise UserInputError(f"{method} trains the MLPs, but block {i} of {type(model).__name__} has no .mlp.")
        chosen = [m.weight for n, m in block.named_modules(prefix="block") if pick is not None and pick(n)]
        for p in chosen or list(mlp.parameters()):
            p.requires_grad_(True)
            params.append(p)
    return params


class GradientUnlearner(Unlearner):
    """Shared loop: AdamW on chosen blocks under a learning-rate schedule (methods/schedule.py), optional gradient
    clipping, a step budget, early stopping, and NaN safety.

    A non-finite loss rolls the trained parameters back to the last good snapshot and halves the
    learning rate once; a second one stops the run, keeping the last good weights.
    """

    # the stop rule's checks during a run (``should_stop``, ``_keep_best``): trained parameters, the check with the
    # smallest validation gap (gap, step, weights), and the last gap
    _trained: list[nn.Parameter]
    _best: tuple[float, int, list[torch.Tensor]] | None = None
    _last_gap: float | None = None

    # True when ``loss`` computes only this process's share of the batch (summed over processes);
    # False: every process computes the whole loss, and gradients are averaged (same result, no speed-up).
    shards_data: ClassVar[bool] = False

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

    def lora_modules(self, name: str) -> bool:
        """Which linear layers of the trained blocks get a LoRA adapter (``model.lora``): all of them, unless a
        method trains part of a block (RMU: its MLP output projections)."""
        return True

    def prepare(self, task: UnlearnTask) -> None:
        """Precompute whatever the loss needs from the original model (before any update)."""

    @abstractmethod
    def loss(self, task: UnlearnTask, step: int, rng: random.Random) -> torch.Tensor | dict[str, torch.Tensor]:
        """The step's loss, or its named terms, each already weighted, whose sum is the loss: the loop records
        every term per step (``UnlearnOutcome.loss_terms``) so a run shows which one dominates."""

    def should_stop(self, task: UnlearnTask, step: int) -> bool:
        """Baselines (``stop_at_floor``) stop once the targets are recalled on the validation split within
        ``stop_margin`` of unknown names on the same prompts: training past that only adds damage
        (docs/baselines.md). Each check also keeps the weights with the smallest gap so far (``_best``)."""
        if not getattr(self.cfg, "stop_at_floor", False) or task.forget_gap_to_floor is None:
            return False
        gap = task.forget_gap_to_floor(task.model)
        self._last_gap = gap
        if self._best is None or gap < self._best[0]:  # strictly smaller: ties keep the earlier, less trained step
            self._best = (gap, step + 1, [p.detach().clone() for p in self._trained])
        return gap <= self.cfg.stop_margin

    def _keep_best(self, state: LoopState) -> None:
        """A run that spent its budget without reaching the floor ends on the checked weights with the smallest
        validation gap, when those are not the last ones (docs/baselines.md, "best checkpoint"). Not kept
        across a resume: a resumed run keeps the best since it resumed."""
        if state.stopped_reason != "budget" or self._best is None or self._last_gap is None:
            return
        gap, step, weights = self._best
        if gap < self._last_gap:
            with torch.no_grad():
                for p, w in zip(self._trained, weights):
                    p.copy_(w)
            state.message = (
                f"kept the weights of step {step} (validation gap to the floor {gap:+.3f}; "
                f"{self._last_gap:+.3f} at the end of the budget)"
            )
            state.best_step = step
        self._best = None

    def _across_processes(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """Sum (sharded losses) or average (replicated ones) over processes, in place."""
        parallel.sum_across(tensors)
        if not self.shards_data and parallel.world_size() > 1:
            for t in tensors:
                t.div_(parallel.world_size())
        return tensors

    def release(self, task: UnlearnTask) -> None:
        """Undo what training set up on the model beyond its weights (a gradient hook), once training ends."""

    def method_state(self) -> dict:
        """Plain-data running state the loss keeps between steps (saved in checkpoints)."""
        return {}

    def load_method_state(self, state: dict) -> None:
        pass

    def unlearn(self, task: UnlearnTask) -> UnlearnOutcome:
        torch.manual_seed(task.seed)
        rng = random.Random(task.seed)
        self.prepare(task)
        if task.lora is not None:  # task.model becomes the peft wrapper; the pipeline keeps that object
            task.model = wrap_with_lora(
                task.model,
                self.trained_layers(task),
                task.lora["rank"],
                task.lora["alpha"],
                task.seed,
                only=self.lora_modules,
            )
            params = [p for p in task.model.parameters() if p.requires_grad]
        else:
            params = self.trainable_params(task)
        if task.gradient_checkpointing:
            enable_gradient_checkpointing(task.model)
        ckpt = task.checkpointer
        plain = None  # under FSDP: the full model, refilled with the trained weights at the end
        if sharding.fsdp_requested():  # checkpoints gather the shards into full tensors (checkpoint.py)
            device = next(task.model.parameters()).device
            plain, task.model = task.model, sharding.shard_for_training(task.model)
            params = [p for p in task.model.parameters() if p.requires_grad]
        opt = make_optimizer(params, self.lr, self.cfg.weight_decay)
        snapshot = [p.detach().clone() for p in params]
        state = LoopState()
        if ckpt is not None and ckpt.resume:
            state = ckpt.load(params, snapshot, opt, rng) or state
            self.load_method_state(state.method_state)
        deterministic_train_mode(task.model)  # no dropout: the edit must be deterministic for a given seed
        if not state.finished:
            self._trained, self._best, self._last_gap = params, None, None
            opt = self._train(task, params, snapshot, opt, rng, state)
            self._keep_best(state)
            if ckpt is not None:
                state.finished, state.method_state = True, self.method_state()
                ckpt.save(params, snapshot, opt, rng, state)
        self.release(task)
        if plain is not None:
            task.model = sharding.gather_into(task.model, plain, device)
        task.model.train(False)
        if task.gradient_checkpointing:
            disable_gradient_checkpointing(task.model)
        for p in task.model.parameters():
            p.requires_grad_(False)
        return UnlearnOutcome(
            steps_run=len(state.history),
            stopped_reason=state.stopped_reason,
            loss_history=state.history,
            loss_terms=state.terms,
            message=state.message,
            best_step=state.best_step,
        )

    def _train(
        self,
        task: UnlearnTask,
        params: list[nn.Parameter],
        snapshot: list[torch.Tensor],
        opt: torch.optim.Optimizer,
        rng: random.Random,
        state: LoopState,
    ) -> torch.optim.Optimizer:
        """Steps ``state.step`` .. budget; updates ``state`` in place and returns the optimizer in use
        (a new one after a learning-rate cut)."""
        sharded = sharding.fsdp_requested()
        multiplier = lr_multiplier(self.cfg.lr_schedule, round(self.cfg.warmup * task.steps), task.steps)
        bar = tqdm(
            range(state.step, task.steps),
            desc=f"unlearn [{self.name}]",
            disable=not task.progress,
            initial=state.step,
            total=task.steps,
        )
        for step in bar:
            terms = self.loss(task, step, rng)
            loss = cast(torch.Tensor, sum(terms.values())) if isinstance(terms, dict) else terms
            total = self._across_processes([loss.detach().clone().reshape(1)])[0]  # the same verdict everywhere
            if not torch.isfinite(total).all():
                with torch.no_grad():
                    for p, s in zip(params, snapshot):
                        p.copy_(s)
                if state.lowered:
                    state.stopped_reason = "non_finite_loss"
                    state.message = (
                        f"loss became non-finite twice (step {step}); stopped and kept the last good "
                        "weights. Lower the learning rate."
                    )
                    break
                state.lowered = True
                opt = make_optimizer(params, self.lr / 2, self.cfg.weight_decay)
                state.message = f"loss became non-finite at step {step}; rolled back and halved the learning rate."
                state.step = step + 1
                continue
            with torch.no_grad():  # these weights gave a finite loss: the last good ones
                for p, s in zip(params, snapshot):
                    s.copy_(p)
            opt.zero_grad(set_to_none=True)
            if sharded:  # FSDP averages the processes' gradients; a sharded loss needs their sum
                (loss * (parallel.world_size() if self.shards_data else 1)).backward()
            elif loss.requires_grad:  # a process with no rows of its own contributes zero gradients
                loss.backward()
            if parallel.world_size() > 1 and not sharded:
                for p in params:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                self._across_processes([p.grad for p in params if p.grad is not None])  # all set above
            if self.cfg.max_grad_norm is not None:  # the whole update's norm, as the HF Trainer clips
                torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], self.cfg.max_grad_norm)
            set_lr(opt, (self.lr / 2 if state.lowered else self.lr) * multiplier(step))
            opt.step()
            state.history.append(float(total))
            if isinstance(terms, dict):
                values = self._across_processes(
                    [torch.stack([v.detach().float().reshape(()) for v in terms.values()])]
                )[0]
                for name, value in zip(terms, values.tolist()):
                    state.terms.setdefault(name, []).append(value)
            state.step = step + 1
            bar.set_postfix(loss=f"{state.history[-1]:.4f}")
            if (step + 1) % self.eval_every == 0 and self.should_stop(task, step):
                state.stopped_reason = "early_stop"
                break
            if task.checkpointer is not None and task.checkpointer.due(state.step) and state.step < task.steps:
                state.method_state = self.method_state()
                task.checkpointer.save(params, snapshot, opt, rng, state)
        bar.close()
        return opt


def sample_rows(n: int, k: int, rng: random.Random) -> list[int]:
    return list(range(n)) if k >= n else rng.sample(range(n), k)
