"""Typed method settings (pydantic): an unknown key or a wrong type is refused with the field named, before any
compute, both in a YAML config (``unlearn.methods.<name>``) and in Python."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class MethodOptions(BaseModel):
    """Every method's settings derive from this; frozen, since a run must not change them under its checkpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class GradientOptions(MethodOptions):
    """What every gradient method's loop reads (methods/base.GradientUnlearner)."""

    lr: float = Field(1e-4, gt=0)
    eval_every: int = Field(10, ge=1)  # steps between stop checks


class FloorStopOptions(GradientOptions):
    """The baselines: fixed-size batches, and a stop once forget recall reaches unknown names on the same prompts
    plus ``stop_margin`` (issue 5's "within 5 points"; docs/baselines.md)."""

    batch_size: int = Field(32, ge=1)
    stop_at_floor: bool = True
    stop_margin: float = Field(0.05, ge=0, le=1)
