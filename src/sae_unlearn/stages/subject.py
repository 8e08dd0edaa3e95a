"""Stage 1, the subject: the model and its entities (the synthetic world and its trained model, or a
Hugging Face model with an entity file and fictional never-seen names).
"""

from __future__ import annotations

import time
from pathlib import Path

from torch import nn

from sae_unlearn import parallel
from sae_unlearn.config import DemoConfig
from sae_unlearn.entities.real import real_entities
from sae_unlearn.entities.synthetic import SyntheticWorld, build_world
from sae_unlearn.entities.types import Entity
from sae_unlearn.errors import UserInputError
from sae_unlearn.io_utils import cache_root
from sae_unlearn.models.layers import check_layer, num_layers
from sae_unlearn.models.loading import DTYPES, load_causal_lm, resolve_model_source
from sae_unlearn.models.world_model import get_or_train_world_model
from sae_unlearn.state import Subject, Workspace


def build_synthetic(cfg: DemoConfig, progress: bool = True) -> Workspace:
    t0 = time.time()
    if cfg.layer is not None and not 0 <= cfg.layer < cfg.world_model.n_layer:
        raise UserInputError(
            f"Layer {cfg.layer} is out of range: this model has {cfg.world_model.n_layer} layers, "
            f"so use 0..{cfg.world_model.n_layer - 1}."
        )
    world_cfg = cfg.world.model_dump()
    world = build_world(**world_cfg)
    with parallel.main_process_first():  # under a launcher: one process trains and caches, the others read
        model_dir = get_or_train_world_model(world, world_cfg, cfg.world_model.model_dump(), cache_root(), progress)
    model, tokenizer = load_causal_lm(model_dir, device=cfg.device)
    ws = subject_from_model(cfg, model, tokenizer, world.known, world.unknown, model_dir, world=world)
    ws.timings["world_model"] = time.time() - t0
    return ws


def build_real(cfg: DemoConfig, progress: bool = True) -> Workspace:
    """A Hugging Face model (hub id, directory or built-in name) and the entities of a JSONL file."""
    assert cfg.model.name is not None
    t0 = time.time()
    entities, fictional = real_entities(
        cfg.entities.file, cfg.entities.n_fictional, cfg.seed, cfg.entities.heldout_phrasings
    )
    check_forget_names(cfg, entities, f"the entity file {cfg.entities.file or 'data/real_entities.jsonl'}")
    with parallel.main_process_first():  # a built-in model is converted once, by one process
        model_dir = resolve_model_source(cfg.model.name)
    model, tokenizer = load_causal_lm(model_dir, device=cfg.device, dtype=DTYPES[cfg.model.dtype])
    ws = subject_from_model(cfg, model, tokenizer, entities, fictional, Path(model_dir))
    ws.timings["model"] = time.time() - t0
    return ws


def check_forget_names(cfg: DemoConfig, entities: list[Entity], where: str) -> None:
    """Before loading anything: a typo should not cost a model load."""
    names = {e.name for e in entities}
    missing = [n for n in cfg.unlearn.forget if n not in names]
    if missing and not cfg.unlearn.name_only:
        raise UserInputError(
            f"Forget entities {missing} are not in {where}; check the spelling, add them, "
            "or use --name-only to forget them from what the model itself says about them."
        )


def subject_from_model(
    cfg: DemoConfig,
    model: nn.Module,
    tokenizer,
    entities: list[Entity],
    never_seen: list[Entity],
    model_dir: Path,
    cacheable: bool = True,
    world: SyntheticWorld | None = None,
) -> Workspace:
    """The workspace of a loaded model; ``cacheable=False`` when its weights may differ from ``model_dir`` (the
    Python API's models), so nothing is cached under that name. The synthetic ``world`` always scores recall on
    its held-out templates; an entity file does when it has held-out facts."""
    layer = check_layer(model, cfg.layer if cfg.layer is not None else num_layers(model) // 2)
    has_heldout = world is not None or any(f.heldout for e in entities for f in e.facts)
    subject = Subject(
        cfg=cfg,
        model_dir=model_dir,
        model=model,
        tokenizer=tokenizer,
        layer=layer,
        entities=entities,
        never_seen=never_seen,
        world=world,
        cacheable=cacheable,
        eval_heldout=True if has_heldout else None,
    )
    return Workspace(subject)


def build_workspace(cfg: DemoConfig, progress: bool = True) -> Workspace:
    """``model.name`` set: a real model and an entity file; unset: the synthetic world."""
    return build_real(cfg, progress) if cfg.model.name else build_synthetic(cfg, progress)
