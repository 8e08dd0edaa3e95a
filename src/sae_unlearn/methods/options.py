"""Typed method settings (pydantic): an unknown key or a wrong type is refused with the field named, before any
compute, both in a YAML config (``unlearn.methods.<name>``) and in Python."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# the learning rate after warmup (methods/schedule.py): held, or decayed to 0 at the step budget
LRSchedule = Literal["constant", "linear", "cosine"]


class MethodOptions(BaseModel):
    """Every method's settings derive from this; frozen, since a run must not change them under its checkpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class GradientOptions(MethodOptions):
    """What every gradient method's loop reads (methods/base.GradientUnlearner, methods/schedule.py). The neutral
    defaults here (constant rate, no clipping, no decay); the baselines override them with their references'
    training recipe (``FloorStopOptions``, docs/baselines.md), and SAE-guided with the same recipe since session 45
    (its real-model presets keep the constant rate they were tuned with)."""

    lr: float = Field(1e-4, gt=0)
    eval_every: int = Field(10, ge=1)  # steps between stop checks
    lr_schedule: LRSchedule = "constant"
    warmup: float = Field(0.0, ge=0, lt=1)  # share of the step budget over which the rate ramps up from 0
    max_grad_norm: float | None = Field(None, gt=0)  # clip the gradients' global norm to this (None: no clipping)
    weight_decay: float = Field(0.0, ge=0)  # AdamW's decoupled weight decay


class FloorStopOptions(GradientOptions):
    """The baselines: fixed-size batches, and a stop once forget recall reaches unknown names on the same prompts
    plus ``stop_margin`` (issue 5's "within 5 points"; docs/baselines.md)."""

    batch_size: int = Field(32, ge=1)
    stop_at_floor: bool = True
    stop_margin: float = Field(0.05, ge=0, le=1)
    # open-unlearning's recipe (configs/experiment/unlearn/tofu/default.yaml under the HF Trainer's defaults):
    # linear decay after one epoch in ten of warmup, gradients clipped at norm 1, weight decay 0.01
    lr_schedule: LRSchedule = "linear"
    warmup: float = Field(0.1, ge=0, lt=1)
    max_grad_norm: float | None = Field(1.0, gt=0)
    weight_decay: float = Field(0.01, ge=0)
