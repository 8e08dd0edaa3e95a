"""The narrow view that evaluation, attacks and figures read (issue 22): what was built before an edited model is
scored, every part present, and nothing a stage could use to move on.

Why not the ``Workspace``: it carries every stage's record, each possibly still None, plus the means to add one
(``with_``) and what only the run record needs (cache directories, the name-only descriptions, timings). A metric
that reads this context cannot depend on a stage's bookkeeping and has no None to check.
``Workspace.evaluation`` builds it once the SAE, the split and the latent frame exist; tests/test_layering.py
keeps evaluation, attacks and figures off the workspace.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sae_unlearn.config import DemoConfig
from sae_unlearn.entities.synthetic import SyntheticWorld
from sae_unlearn.entities.types import Entity, EntitySplit
from sae_unlearn.metrics.alignment import KnownUnknownProbe
from sae_unlearn.sae.latents import LatentScores


def scored_sample(entities: list[Entity], k: int | None, seed: int) -> list[Entity]:
    """The entities of a set whose recall is scored: all, or a seeded sample of ``k`` (``eval.max_scored_entities``).
    The same list gives the same sample, so the "before" and "after" numbers score the same entities."""
    if k is None or len(entities) <= k:
        return entities
    keep = set(random.Random(f"scored-{seed}").sample(range(len(entities)), k))
    return [e for i, e in enumerate(entities) if i in keep]


@dataclass(frozen=True)
class EvaluationContext:
    """The original model, its entities and split, the SAE frame and the original model's floors."""

    cfg: DemoConfig
    model: nn.Module  # the original ("before") model; an edited one is passed beside the context
    tokenizer: Any
    layer: int
    sae: Any
    split: EntitySplit
    unknown_eval: list[Entity]
    candidates: list[Entity]  # every entity probing scored (reverse questions look for the targets among them)
    scores: LatentScores
    probe: KnownUnknownProbe  # on SAE codes
    residual_probe: KnownUnknownProbe  # on raw residuals
    mu_known: torch.Tensor
    mu_unknown: torch.Tensor
    world: SyntheticWorld | None = None
    eval_heldout: bool | None = True
    answerable_checked: bool = False
    # the original model's evaluation leaves (empty while that evaluation itself runs)
    relearn_floors: dict = field(default_factory=dict)
    original_codes: dict[str, torch.Tensor] = field(default_factory=dict)

    def scored(self, entities: list[Entity]) -> list[Entity]:
        return scored_sample(entities, self.cfg.eval.max_scored_entities, self.cfg.seed)
