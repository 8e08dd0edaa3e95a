"""What the stages share, as one frozen record per stage: the subject (model and entities), the SAE, the
probing, the split, the latent frame and the original model's floors; a ``Workspace`` composes them.

Each stage (``stages/``) reads the records before it and returns the workspace with its own record added
(``Workspace.with_``); nothing changes a record once built, and the order of the stages is the order in which
records exist. Evaluation, attacks and figures read none of this directly: they get ``Workspace.evaluation``, the
narrow view of context.py, a state no one can move under them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sae_unlearn.config import DemoConfig
from sae_unlearn.context import EvaluationContext, scored_sample
from sae_unlearn.entities.synthetic import SyntheticWorld
from sae_unlearn.entities.types import Entity, EntitySplit, Fact
from sae_unlearn.entities.validation import validation_entities
from sae_unlearn.metrics.alignment import KnownUnknownProbe
from sae_unlearn.metrics.recall import substituted_recall
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


@dataclass(frozen=True)
class Subject:
    """Stage 1: the model and its entities."""

    cfg: DemoConfig
    model_dir: Path
    model: nn.Module
    tokenizer: Any  # a transformers tokenizer
    layer: int
    entities: list[Entity]  # the candidates probing will score (the world's known ones, or the entity file)
    never_seen: list[Entity]  # provably unknown: synthetic unseen / fictional
    world: SyntheticWorld | None = None
    # the weights are exactly those stored under model_dir, so probing and the SAE may be cached by that name
    cacheable: bool = True
    eval_heldout: bool | None = True  # recall on held-out facts (True) or, when a file marks none, on all (None)


@dataclass(frozen=True)
class SAEFrame:
    """Stage 2: the SAE on the subject's layer, and where it came from (for the report)."""

    sae: Any  # a sae-lens SAE
    sae_dir: Path


@dataclass(frozen=True)
class Probing:
    """Stage 3a: who the original model knows."""

    shares: dict[str, float]  # entity -> share of its facts recalled
    candidates: list[Entity]  # the subject's entities, with Fact.answerable set where checked
    answerable_checked: bool = False  # the known entities' facts carry Fact.answerable (real models)
    all_answerable: list[str] = field(default_factory=list)  # recalled, but only through prompt-answerable facts
    partly_answerable_only: list[str] = field(default_factory=list)  # the same among entities known in part


@dataclass(frozen=True)
class SplitRecord:
    """Stage 3b: targets, retained, held-out known and unknown entities."""

    split: EntitySplit
    unknown_eval: list[Entity]
    n_known: int
    skipped_forget: list[str] = field(default_factory=list)  # requested targets the model did not know
    # per target: (training facts recalled on probing, training facts); a requested target may be known in part
    forget_known_facts: dict[str, tuple[int, int]] = field(default_factory=dict)
    # --name-only: what the model said about each requested name; the losses see these facts, not the file's
    described: list[DescribedName] = field(default_factory=list)


@dataclass(frozen=True)
class LatentFrame:
    """Stage 4: the latents' separation scores, the known/unknown probes and the original model's centroids."""

    scores: LatentScores
    probe: KnownUnknownProbe  # on SAE codes
    residual_probe: KnownUnknownProbe  # the same question on raw residuals (an attacker's probe)
    mu_known: torch.Tensor  # mean SAE code of the non-target known entities (original model)
    mu_unknown: torch.Tensor
    # the SAE on the entities' last tokens, known and unknown (sae/quality.py): l0, explained_variance, ...
    sae_quality: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class OriginalFloors:
    """The original model's evaluation leaves: the relearning attack's floors, and its SAE codes at the entity's
    last token ("forget", "unknown", "known": the other known entities), which the report's figures reuse."""

    relearn_floors: dict
    codes: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Workspace:
    """The stage records built so far (a later one is None until its stage ran); each method gets a fresh copy of
    the model. The fields the stages used to fill one by one are read-only properties over the records."""

    subject: Subject
    sae_frame: SAEFrame | None = None
    probing_record: Probing | None = None
    split_record: SplitRecord | None = None
    latents: LatentFrame | None = None
    floors: OriginalFloors | None = None
    timings: dict[str, float] = field(default_factory=dict)  # a log of seconds per stage, shared by all records

    def with_(self, **records: Any) -> "Workspace":
        """This workspace with a stage's record added (the stages' one way forward)."""
        return dataclasses.replace(self, **records)

    def with_config(self, cfg: DemoConfig) -> "Workspace":
        """The same records read under another configuration (what a test varies); nothing is rebuilt."""
        return self.with_(subject=dataclasses.replace(self.subject, cfg=cfg))

    # -- the subject
    @property
    def cfg(self) -> DemoConfig:
        return self.subject.cfg

    @property
    def model_dir(self) -> Path:
        return self.subject.model_dir

    @property
    def model(self) -> nn.Module:
        return self.subject.model

    @property
    def tokenizer(self) -> Any:
        return self.subject.tokenizer

    @property
    def layer(self) -> int:
        return self.subject.layer

    @property
    def world(self) -> SyntheticWorld | None:
        return self.subject.world

    @property
    def never_seen(self) -> list[Entity]:
        return self.subject.never_seen

    @property
    def cacheable(self) -> bool:
        return self.subject.cacheable

    @property
    def eval_heldout(self) -> bool | None:
        return self.subject.eval_heldout

    # -- the SAE
    @property
    def sae(self) -> Any:
        return self.sae_frame.sae if self.sae_frame else None

    @property
    def sae_dir(self) -> Path | None:
        return self.sae_frame.sae_dir if self.sae_frame else None

    # -- probing (before it ran: the subject's entities, none scored)
    @property
    def candidates(self) -> list[Entity]:
        return self.probing_record.candidates if self.probing_record else self.subject.entities

    @property
    def probing(self) -> dict[str, float]:
        return self.probing_record.shares if self.probing_record else {}

    @property
    def answerable_checked(self) -> bool:
        return bool(self.probing_record and self.probing_record.answerable_checked)

    @property
    def all_answerable(self) -> list[str]:
        return self.probing_record.all_answerable if self.probing_record else []

    @property
    def partly_answerable_only(self) -> list[str]:
        return self.probing_record.partly_answerable_only if self.probing_record else []

    # -- the split
    @property
    def split(self) -> EntitySplit | None:
        return self.split_record.split if self.split_record else None

    @property
    def unknown_eval(self) -> list[Entity]:
        return self.split_record.unknown_eval if self.split_record else []

    @property
    def n_known(self) -> int:
        return self.split_record.n_known if self.split_record else 0

    @property
    def skipped_forget(self) -> list[str]:
        return self.split_record.skipped_forget if self.split_record else []

    @property
    def forget_known_facts(self) -> dict[str, tuple[int, int]]:
        return self.split_record.forget_known_facts if self.split_record else {}

    @property
    def described(self) -> list[DescribedName]:
        return self.split_record.described if self.split_record else []

    # -- the latent frame
    @property
    def scores(self) -> LatentScores | None:
        return self.latents.scores if self.latents else None

    @property
    def probe(self) -> KnownUnknownProbe | None:
        return self.latents.probe if self.latents else None

    @property
    def sae_quality(self) -> dict[str, float]:
        return self.latents.sae_quality if self.latents else {}

    def validation_of(self, entities: list[Entity]) -> list[Entity]:
        """``entities``' validation facts (entities/validation.py): neither a loss's phrasings nor the evaluation's."""
        return validation_entities(entities, self.tokenizer, False if self.eval_heldout else None)

    @cached_property
    def validation_targets(self) -> list[Entity]:
        """The targets' validation facts, which the stop rule and the tuning ask at every check: built once."""
        return self.validation_of(self.training_split().forget)

    @cached_property
    def forget_floor(self) -> float:
        """The targets' validation prompts with unknown names swapped in, on the original model: what the
        baselines' stop rule and the tuning compare the targets' validation recall against. Measured on first use
        (methods without the stop rule never pay for it), once per workspace."""
        return substituted_recall(
            self.model,
            self.tokenizer,
            self.validation_targets,
            self.unknown_eval,
            heldout=None,
            max_new_tokens=self.cfg.eval.max_new_tokens,
        )

    def scored(self, entities: list[Entity]) -> list[Entity]:
        """The entities of a set whose recall is scored (``context.scored_sample``)."""
        return scored_sample(entities, self.cfg.eval.max_scored_entities, self.cfg.seed)

    @property
    def evaluation(self) -> EvaluationContext:
        """What evaluation, attacks and figures read (context.py): needs the SAE, the split and the latent frame."""
        if self.split_record is None or self.latents is None or self.sae_frame is None:
            raise RuntimeError("evaluation reads the SAE, the split and the latent frame: run those stages first")
        lat, floors = self.latents, self.floors
        return EvaluationContext(
            cfg=self.cfg,
            model=self.model,
            tokenizer=self.tokenizer,
            layer=self.layer,
            sae=self.sae_frame.sae,
            split=self.split_record.split,
            unknown_eval=self.split_record.unknown_eval,
            candidates=self.candidates,
            scores=lat.scores,
            probe=lat.probe,
            residual_probe=lat.residual_probe,
            mu_known=lat.mu_known,
            mu_unknown=lat.mu_unknown,
            world=self.world,
            eval_heldout=self.eval_heldout,
            answerable_checked=self.answerable_checked,
            relearn_floors=floors.relearn_floors if floors else {},
            original_codes=floors.codes if floors else {},
        )

    def training_split(self) -> EntitySplit:
        """The split the methods train on: the other entities' facts answered by a target only with
        ``unlearn.reverse_facts``; with --name-only, the targets carry the facts the model gave, and no fact of the
        entity file reaches a loss (not even another entity's fact naming a target)."""
        assert self.split is not None
        if self.described:
            by_name = {d.name: d.entity() for d in self.described if d.known}
            return dataclasses.replace(self.split, forget=[by_name[e.name] for e in self.split.forget], answering=[])
        if not self.cfg.unlearn.reverse_facts:
            return dataclasses.replace(self.split, answering=[])
        return self.split
