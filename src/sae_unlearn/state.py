"""What the stages share: the run's subject (model, entities, SAE), the split, the probes and floors.

The stages (``stages/``) fill a ``Workspace`` in order: subject -> SAE -> probing and split -> latents;
evaluation, attacks and the report then only read it. It lives in this leaf module so that the modules
which read it (attacks, figures) need not import the stages or the run drivers.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sae_unlearn.config import DemoConfig
from sae_unlearn.entities.synthetic import SyntheticWorld
from sae_unlearn.entities.types import Entity, EntitySplit, Fact
from sae_unlearn.metrics.alignment import KnownUnknownProbe
from sae_unlearn.sae.latents import LatentScores


@dataclass(frozen=True)
class DescribedName:
    """What the model gave for one name: its inferred type and the facts it knows (empty: unknown)."""

    name: str
    type: str
    facts: tuple[Fact, ...]
    asked: int  # relations asked

    @property
    def known(self) -> bool:
        return bool(self.facts)

    def entity(self) -> Entity:
        return Entity(self.name, self.type, list(self.facts))


@dataclass
class Workspace:
    """Everything the stages share; built once, then each method gets a fresh copy of the model."""

    cfg: DemoConfig
    model_dir: Path
    model: nn.Module
    tokenizer: Any  # a transformers tokenizer
    layer: int
    world: SyntheticWorld | None = None
    candidates: list[Entity] = field(default_factory=list)  # probed; known if recall share >= threshold
    never_seen: list[Entity] = field(default_factory=list)  # provably unknown: synthetic unseen / fictional
    # the weights are exactly those stored under model_dir, so probing and the SAE may be cached by that name
    cacheable: bool = True
    eval_heldout: bool | None = True  # recall on held-out facts (True) or, when a file marks none, on all (None)
    sae: Any = None  # a sae-lens SAE
    sae_dir: Path | None = None
    split: EntitySplit | None = None
    unknown_eval: list[Entity] = field(default_factory=list)
    scores: LatentScores | None = None
    probe: KnownUnknownProbe | None = None  # on SAE codes
    residual_probe: KnownUnknownProbe | None = None  # the same question on raw residuals (an attacker's probe)
    relearn_floors: dict = field(default_factory=dict)  # the relearning attack on the original model
    mu_known: torch.Tensor | None = None  # mean SAE code of the non-target known entities (original model)
    mu_unknown: torch.Tensor | None = None
    timings: dict[str, float] = field(default_factory=dict)
    probing: dict[str, float] = field(default_factory=dict)  # entity -> share of facts recalled (original model)
    skipped_forget: list[str] = field(default_factory=list)  # requested targets the model did not know
    forget_floor: float | None = None  # targets' validation prompts, unknown names swapped in (baselines' stop)
    n_known: int = 0
    answerable_checked: bool = False  # the known entities' facts carry Fact.answerable (real models)
    all_answerable: list[str] = field(default_factory=list)  # recalled, but only through prompt-answerable facts
    partly_answerable_only: list[str] = field(default_factory=list)  # the same among entities known in part
    # per target: (training facts recalled on probing, training facts); a requested target may be known in part
    forget_known_facts: dict[str, tuple[int, int]] = field(default_factory=dict)
    # --name-only: what the model said about each requested name; the losses see these facts, not the file's
    described: list[DescribedName] = field(default_factory=list)
    # SAE codes of the original model at the entity's last token ("forget", "unknown", "known": the other
    # known entities), every phrasing, from its evaluation: the report's figures reuse them
    original_codes: dict[str, torch.Tensor] = field(default_factory=dict)

    def scored(self, entities: list[Entity]) -> list[Entity]:
        """The entities of a set whose recall is scored: all, or a seeded sample of ``eval.max_scored_entities``.
        The same list gives the same sample, so the "before" and "after" numbers score the same entities."""
        k = self.cfg.eval.max_scored_entities
        if k is None or len(entities) <= k:
            return entities
        keep = set(random.Random(f"scored-{self.cfg.seed}").sample(range(len(entities)), k))
        return [e for i, e in enumerate(entities) if i in keep]

    def training_split(self) -> EntitySplit:
        """The split the methods train on: with --name-only, the targets carry the facts the model gave."""
        assert self.split is not None
        if not self.described:
            return self.split
        by_name = {d.name: d.entity() for d in self.described if d.known}
        return dataclasses.replace(self.split, forget=[by_name[e.name] for e in self.split.forget])
