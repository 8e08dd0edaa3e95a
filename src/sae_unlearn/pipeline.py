"""Wires the stages together: world -> model -> SAE -> latents -> unlearning -> evaluation -> outputs.

Each stage is a function of the previous stages' results, so the CLI's stage commands and the
demo share one code path; expensive artefacts (world model, SAE) are cached by content hash.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import random
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sae_unlearn import parallel
from sae_unlearn.config import DemoConfig, dump_config
from sae_unlearn.entities.synthetic import SyntheticWorld, build_world
from sae_unlearn.entities.types import Entity, EntitySplit
from sae_unlearn.errors import UserInputError
from sae_unlearn.io_utils import (CHECKPOINTS, atomic_save_dir, atomic_write_json, atomic_write_text, cache_root,
                                  prepare_output_dir)
from sae_unlearn.methods import UnlearnOutcome, UnlearnTask, build_method, get_method, sharding
from sae_unlearn.methods.sae_guided import SAEGuidedConfig
from sae_unlearn.methods.base import fact_prompts
from sae_unlearn.methods.checkpoint import Checkpointer
from sae_unlearn.metrics.entangled import split_entangled
from sae_unlearn.attacks.suite import FLOOR_KEYS, relearn_floors, relearn_metrics, state_attacks
from sae_unlearn.metrics.alignment import (KnownUnknownProbe, centroid_distances, entity_activations, entity_codes,
                                           sae_codes)
from sae_unlearn.metrics.recall import (entity_recall_shares, greedy_continuations, recall, reuse_greedy_continuations,
                                       substituted_recall)
from sae_unlearn.metrics.utility import degenerate_rate, perplexity
from sae_unlearn.models.capture import capture_all_positions
from sae_unlearn.models.layers import check_layer, hook_name, model_device, num_layers
from sae_unlearn.models.loading import load_causal_lm, resolve_model_source
from sae_unlearn.real_source import DTYPES, real_entities, sae_corpus
from sae_unlearn.entities.fictional import fictional_entities
from sae_unlearn.metrics.answerable import mark_answerable
from sae_unlearn.metrics.probing_cache import load_probing, probing_cache_path, save_probing
from sae_unlearn.models.prompts import EncodedPrompts
from sae_unlearn.models.world_model import get_or_train_world_model
from sae_unlearn.sae.latents import LatentScores, separation_scores
from sae_unlearn.sae.loading import check_sae_matches, load_sae
from sae_unlearn.sae.training import save_sae, train_sae
from sae_unlearn.stages.name_only import DescribedName, NameOnlySettings, describe_names, evaluation_entity

log = logging.getLogger("sae_unlearn")


@dataclass
class Workspace:
    """Everything the stages share; built once, then each method gets a fresh copy of the model."""

    cfg: DemoConfig
    model_dir: Path
    model: nn.Module
    tokenizer: object
    layer: int
    world: SyntheticWorld | None = None
    candidates: list[Entity] = field(default_factory=list)  # probed; known if recall share >= threshold
    never_seen: list[Entity] = field(default_factory=list)  # provably unknown: synthetic unseen / fictional
    eval_heldout: bool | None = True  # recall on held-out facts (True) or, when a file marks none, on all (None)
    sae: object = None
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
    forget_floor: float | None = None  # targets' training prompts, unknown names swapped in (baselines' stop)
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


# -- stage 1: the world and its model ------------------------------------------------------------
def build_synthetic(cfg: DemoConfig, progress: bool = True) -> Workspace:
    t0 = time.time()
    if cfg.layer is not None and not 0 <= cfg.layer < cfg.world_model.n_layer:
        raise UserInputError(f"Layer {cfg.layer} is out of range: this model has {cfg.world_model.n_layer} layers, "
                             f"so use 0..{cfg.world_model.n_layer - 1}.")
    world_cfg = cfg.world.model_dump()
    world = build_world(**world_cfg)
    with parallel.main_process_first():  # under a launcher: one process trains and caches, the others read
        model_dir = get_or_train_world_model(world, world_cfg, cfg.world_model.model_dump(), cache_root(), progress)
    model, tokenizer = load_causal_lm(model_dir, device=cfg.device)
    layer = cfg.layer if cfg.layer is not None else num_layers(model) // 2
    check_layer(model, layer)
    ws = Workspace(cfg=cfg, model_dir=model_dir, model=model, tokenizer=tokenizer, layer=layer, world=world,
                   candidates=world.known, never_seen=world.unknown)
    ws.timings["world_model"] = time.time() - t0
    return ws


def build_real(cfg: DemoConfig, progress: bool = True) -> Workspace:
    """A Hugging Face model (hub id, directory or built-in name) and the entities of a JSONL file."""
    assert cfg.model.name is not None
    t0 = time.time()
    entities, fictional = real_entities(cfg.entities.file, cfg.entities.n_fictional, cfg.seed,
                                        cfg.entities.heldout_phrasings)
    names = {e.name for e in entities}
    missing = [n for n in cfg.unlearn.forget if n not in names]
    if missing and not cfg.unlearn.name_only:  # before loading anything: a typo should not cost a model load
        raise UserInputError(f"Forget entities {missing} are not in the entity file "
                             f"{cfg.entities.file or 'data/real_entities.jsonl'}; check the spelling, add them, "
                             "or use --name-only to forget them from what the model itself says about them.")
    with parallel.main_process_first():  # a built-in model is converted once, by one process
        model_dir = resolve_model_source(cfg.model.name)
    model, tokenizer = load_causal_lm(model_dir, device=cfg.device, dtype=DTYPES[cfg.model.dtype])
    layer = check_layer(model, cfg.layer if cfg.layer is not None else num_layers(model) // 2)
    has_heldout = any(f.heldout for e in entities for f in e.facts)
    ws = Workspace(cfg=cfg, model_dir=Path(model_dir), model=model, tokenizer=tokenizer, layer=layer,
                   candidates=entities, never_seen=fictional, eval_heldout=True if has_heldout else None)
    ws.timings["model"] = time.time() - t0
    return ws


def build_workspace(cfg: DemoConfig, progress: bool = True) -> Workspace:
    """``model.name`` set: a real model and an entity file; unset: the synthetic world."""
    return build_real(cfg, progress) if cfg.model.name else build_synthetic(cfg, progress)


# -- stage 2: capture and the SAE -------------------------------------------------------------------
def sae_training_texts(ws: Workspace) -> list[str]:
    """Synthetic: the corpus plus every entity prompt (known, obscure and unknown), so latents cover
    all three. Real: every fact of the file and the fictional entities, plus the model's own text."""
    if ws.world is None:
        s = ws.cfg.sae
        return sae_corpus(ws.model, ws.tokenizer, ws.candidates + ws.never_seen, s.generation_prompts,
                          s.generation_tokens, ws.cfg.seed)
    w = ws.world
    return w.corpus + fact_prompts(w.known + w.obscure + w.unknown, heldout=None)[0]


def capture_training_activations(ws: Workspace, texts: list[str]) -> torch.Tensor:
    ws.tokenizer.padding_side = "right"  # EncodedPrompts assumes right padding
    enc = ws.tokenizer(texts, padding=True, return_tensors="pt")
    lengths = enc["attention_mask"].sum(1)
    prompts = EncodedPrompts(enc["input_ids"], enc["attention_mask"], torch.zeros_like(lengths), lengths - 1)
    return capture_all_positions(ws.model, prompts, ws.layer)


def get_sae(ws: Workspace, progress: bool = True) -> Workspace:
    t0 = time.time()
    scfg = ws.cfg.sae
    device = str(model_device(ws.model))  # the SAE reads the model's residual stream: same device
    if scfg.path is not None or scfg.release is not None:
        ws.sae = load_sae(scfg.path or scfg.release, scfg.sae_id, device=device)
        ws.sae_dir = scfg.path or Path(f"{scfg.release}:{scfg.sae_id}")  # where it came from, for the report
    else:
        entities = hashlib.sha256(json.dumps([e.to_dict() for e in ws.candidates + ws.never_seen]).encode()).hexdigest()
        key = hashlib.sha256(json.dumps({"model": str(ws.model_dir), "layer": ws.layer, "sae": scfg.model_dump(mode="json"),
                                         "entities": entities, "seed": ws.cfg.seed, "dtype": ws.cfg.model.dtype},
                                        sort_keys=True).encode()).hexdigest()[:16]
        ws.sae_dir = cache_root() / "saes" / key
        if not parallel.agree((ws.sae_dir / "cfg.json").exists()):
            # capture is split across processes; training is repeated in each (same seed, same SAE)
            acts = capture_training_activations(ws, sae_training_texts(ws))
            sae = train_sae(acts, hook_name(ws.layer), str(ws.model_dir), scfg.expansion, scfg.l1_coefficient,
                            scfg.total_samples, scfg.batch_size, scfg.lr, seed=ws.cfg.seed, device=device)
            if parallel.is_main():
                save_sae(sae, ws.sae_dir)
            parallel.barrier()
        ws.sae = load_sae(ws.sae_dir, device=device)
    check_sae_matches(ws.sae, ws.model, ws.layer)
    ws.sae.eval()
    ws.timings["sae"] = time.time() - t0
    return ws


# -- stage 3: who is known, who is forgotten ------------------------------------------------------
def make_split(ws: Workspace) -> Workspace:
    """Known = the model recalls at least ``known_threshold`` of the entity's facts (probing, as
    Ferrando et al.); unknown = never-seen entities, plus (real models) file entities recalled not at all."""
    cfg = ws.cfg
    t0 = time.time()
    check_answerable = ws.world is None and cfg.eval.answerable_substitutes > 0
    cache = probing_cache_path(ws.model_dir, _probing_settings(ws), ws.candidates + ws.never_seen) \
        if ws.world is None and not ws.probing else None
    cached = load_probing(cache, ws.candidates) if cache is not None and parallel.agree(cache.exists()) else None
    if cached is not None:
        ws.probing, flagged = cached
        if check_answerable and flagged is not None:
            _apply_answerable(ws, flagged)
        log.info("probing results reused from %s", cache)
    if len(ws.probing) != len(ws.candidates):  # probing depends on the original model only: once per workspace
        # real models: on the training phrasing (held-out questions and mentions are harder; they are what
        # evaluation reads, before and after, never what decides who is known)
        shares = entity_recall_shares(ws.model, ws.tokenizer, ws.candidates, cfg.eval.max_new_tokens,
                                      heldout=False if ws.world is None and ws.eval_heldout else None)
        ws.probing = {e.name: s for e, s in zip(ws.candidates, shares)}
    if check_answerable and not ws.answerable_checked:
        flag_answerable_facts(ws)
    if cache is not None and cached is None and parallel.is_main():
        save_probing(cache, ws.probing, ws.candidates if ws.answerable_checked else None)
    if check_answerable:
        flag_requested_partial(ws)
    shares = [ws.probing[e.name] for e in ws.candidates]
    known = [e for e, s in zip(ws.candidates, shares)
             if s >= cfg.eval.known_threshold and e.name not in ws.all_answerable]
    ws.n_known = len(known)
    rng = random.Random(cfg.seed)
    forget = _forget_targets(ws, known, rng)
    ws.forget_known_facts = _known_fact_counts(ws, forget)
    forget_names = {e.name for e in forget} | set(cfg.unlearn.forget)  # a skipped request is not kept either
    others = [e for e in known if e.name not in forget_names]
    rng.shuffle(others)
    n_retain = max(1, int(round(len(others) * cfg.unlearn.retain_fraction)))
    unknown = list(ws.never_seen)
    rng.shuffle(unknown)
    half = len(unknown) // 2
    ws.split = EntitySplit(forget=forget, retain=others[:n_retain], heldout_known=others[n_retain:], unknown=unknown[:half])
    ws.unknown_eval = unknown[half:]
    if ws.world is None:  # real file entities the model recalls nothing of are unknown too
        never = [e for e, s in zip(ws.candidates, shares) if s == 0 and e.name not in forget_names]
        rng.shuffle(never)
        ws.unknown_eval += never[: cfg.entities.max_unknown_eval]
    ws.split.validate()
    ws.timings["probing"] = time.time() - t0
    log.info("probing: %d of %d entities known; %d targets", len(known), len(ws.candidates), len(forget))
    return ws


def _probing_settings(ws: Workspace) -> dict:
    """What probing and the answerable check depend on besides the weights and the entities."""
    e = ws.cfg.eval
    return {"dtype": ws.cfg.model.dtype, "device": str(model_device(ws.model).type), "seed": ws.cfg.seed,
            "max_new_tokens": e.max_new_tokens, "known_threshold": e.known_threshold,
            "answerable_substitutes": e.answerable_substitutes}


def flag_answerable_facts(ws: Workspace) -> None:
    """Mark, once, the facts of the probed-known entities that the model completes for made-up names
    too (metrics/answerable.py); an entity with nothing else shows no knowledge of its own and is not
    known. The made-up names are drawn apart from the evaluation's unknown entities, so the
    same-prompt floor measured on those stays an independent check."""
    cfg = ws.cfg
    idx = [i for i, e in enumerate(ws.candidates) if ws.probing[e.name] >= cfg.eval.known_threshold]
    _apply_answerable(ws, _flagged(ws, idx))


def flag_requested_partial(ws: Workspace) -> None:
    """Requested targets known in part are checked like known entities (a few facts: not cached)."""
    cfg = ws.cfg
    requested = set(cfg.unlearn.forget)
    idx = [i for i, e in enumerate(ws.candidates)
           if e.name in requested and 0 < ws.probing[e.name] < cfg.eval.known_threshold]
    if idx:
        _apply_answerable(ws, _flagged(ws, idx))


def _flagged(ws: Workspace, idx: list[int]) -> list[Entity]:
    """``ws.candidates`` with the answerable flags of the entities at ``idx`` set (metrics/answerable.py)."""
    cfg = ws.cfg
    taken = {e.name for e in ws.candidates + ws.never_seen}
    names = fictional_entities(ws.candidates, cfg.eval.answerable_substitutes, seed=cfg.seed + 1, avoid=taken)
    flagged = mark_answerable(ws.model, ws.tokenizer, [ws.candidates[i] for i in idx], names,
                              cfg.eval.answerable_substitutes, cfg.eval.max_new_tokens)
    candidates = list(ws.candidates)
    for i, entity in zip(idx, flagged):
        candidates[i] = entity
    return candidates


def _apply_answerable(ws: Workspace, candidates: list[Entity]) -> None:
    """Take ``candidates`` (flags set) as the workspace's entities; note who has no other fact."""
    threshold = ws.cfg.eval.known_threshold
    ws.candidates = candidates
    ws.all_answerable = [e.name for e in candidates
                         if ws.probing[e.name] >= threshold and all(f.answerable for f in e.facts)]
    ws.partly_answerable_only = [e.name for e in candidates
                                 if 0 < ws.probing[e.name] < threshold and all(f.answerable for f in e.facts)]
    ws.answerable_checked = True
    flagged = [e for e in candidates if ws.probing[e.name] >= threshold]
    n = sum(f.answerable for e in flagged for f in e.facts)
    log.info("%d of %d facts of known entities are completed for made-up names too (left out of recall); "
             "%d entities had no other fact", n, sum(len(e.facts) for e in flagged), len(ws.all_answerable))


def _forget_targets(ws: Workspace, known: list[Entity], rng: random.Random) -> list[Entity]:
    """The user's names (each known to the model, at least in part) or ``n_forget`` random known entities."""
    cfg = ws.cfg
    if cfg.unlearn.name_only:
        return _name_only_targets(ws, known)
    by_name = {e.name: e for e in known}
    if not cfg.unlearn.forget:
        if cfg.unlearn.n_forget >= len(known):
            raise UserInputError(f"n_forget={cfg.unlearn.n_forget} but only {len(known)} entities are known "
                                 f"(recall >= {cfg.eval.known_threshold:.0%} of their facts); lower it.")
        return rng.sample(known, cfg.unlearn.n_forget)
    all_names = {e.name for e in ws.candidates} | ({e.name for e in ws.world.obscure + ws.world.unknown} if ws.world else set())
    missing = [n for n in cfg.unlearn.forget if n not in all_names]
    if missing:
        raise UserInputError(f"Forget entities {missing} are not in the entity set; check the spelling.")
    # a target the model knows in part is a target: forget what it knows (issue 21)
    candidates = {e.name: e for e in ws.candidates}
    by_name |= {n: candidates[n] for n in cfg.unlearn.forget if n not in by_name and n in candidates
                and ws.probing.get(n, 0.0) > 0 and n not in ws.all_answerable + ws.partly_answerable_only}
    not_known = [n for n in cfg.unlearn.forget if n not in by_name]
    if not_known:
        answerable = set(ws.all_answerable + ws.partly_answerable_only)
        detail = ", ".join(f"{n} (every recalled fact is also completed for made-up names)" if n in answerable
                           else f"{n} (recall {ws.probing.get(n, 0.0):.0%})" for n in not_known)
        _skip_not_known(ws, not_known, detail)
    return [by_name[n] for n in cfg.unlearn.forget if n in by_name]


def _skip_not_known(ws: Workspace, not_known: list[str], detail: str) -> None:
    """Requested names the model does not know: an error under --strict (or when none is left), else skipped."""
    cfg = ws.cfg
    msg = f"Forget entities the model knows nothing of: {detail}; there is nothing to forget."
    if cfg.entities.strict or ws.world is not None or len(not_known) == len(cfg.unlearn.forget):
        raise UserInputError(msg + (" Remove them, or run without --strict to skip them." if cfg.entities.strict else ""))
    log.warning("%s Skipping them (use --strict to stop instead).", msg)
    ws.skipped_forget = not_known


def _name_only_targets(ws: Workspace, known: list[Entity]) -> list[Entity]:
    """--name-only: the losses get what the model says about each name (stages/name_only.py); evaluation
    reads the file's facts of a name the file has (with their answerable flags), else the described ones."""
    cfg = ws.cfg  # config.load_config has checked that names and a real model are given
    ws.described = describe_names(ws.model, ws.tokenizer, list(cfg.unlearn.forget), ws.candidates, known, ws.layer,
                                  NameOnlySettings(max_new_tokens=cfg.eval.max_new_tokens), seed=cfg.seed)
    not_known = [d for d in ws.described if not d.known]
    if not_known:
        _skip_not_known(ws, [d.name for d in not_known], ", ".join(
            f"{d.name} (read as a {d.type}; none of {d.asked} questions answered with confidence, or only with "
            "answers it gives for made-up names too)" for d in not_known))
    in_file = {e.name: e for e in ws.candidates}
    for d in ws.described:
        log.info("name-only: %s read as a %s; %d facts the model gives: %s", d.name, d.type, len(d.facts),
                 "; ".join(f"{f.prompt} {f.answer}" for f in d.facts[:6]))
    return [evaluation_entity(d, in_file.get(d.name)) for d in ws.described if d.known]


def _known_fact_counts(ws: Workspace, targets: list[Entity]) -> dict[str, tuple[int, int]]:
    """Per target, how many of its probed (training-phrasing) facts the original model recalled."""
    probed = (lambda f: not f.heldout) if ws.world is None and ws.eval_heldout else (lambda f: True)
    counts = {}
    for e in targets:
        n = sum(map(probed, e.facts))
        counts[e.name] = (round(ws.probing.get(e.name, 1.0) * n), n)
    return counts


# -- stage 4: latents and the known/unknown probe -------------------------------------------------
def select_latents(ws: Workspace) -> Workspace:
    assert ws.split is not None
    known = ws.split.forget + ws.split.other_known
    acts_known, owner = entity_activations(ws.model, ws.tokenizer, known, ws.layer)
    acts_unknown, _ = entity_activations(ws.model, ws.tokenizer, ws.split.unknown, ws.layer)
    z_known, z_unknown = sae_codes(ws.sae, acts_known), sae_codes(ws.sae, acts_unknown)
    ws.scores = separation_scores(z_known, z_unknown)
    ws.probe = KnownUnknownProbe.fit(z_known, z_unknown, seed=ws.cfg.seed)
    ws.residual_probe = KnownUnknownProbe.fit(acts_known, acts_unknown, seed=ws.cfg.seed, standardize=True)
    # centroids of the original model, the fixed reference of every "distance to known/unknown" metric
    ws.mu_known = z_known[torch.from_numpy(owner >= len(ws.split.forget))].mean(0)
    ws.mu_unknown = z_unknown.mean(0)
    return ws


# -- stage 5: unlearning --------------------------------------------------------------------------
def method_options(cfg: DemoConfig, name: str) -> dict:
    """The SAE-guided method reads the ``unlearn.*`` settings; every method also takes
    ``unlearn.method_options.<name>`` (checked against its config's fields)."""
    opts: dict = {}
    if name == "sae_guided":
        known = {f.name for f in fields(SAEGuidedConfig)}
        opts = {k: v for k, v in cfg.unlearn.model_dump().items() if k in known}
    return opts | cfg.unlearn.method_options.get(name, {})


def method_checkpointer(cfg: DemoConfig, name: str, out: Path, resume: bool) -> Checkpointer | None:
    """Checkpoints of method ``name`` under OUT/checkpoints/<name>, tied to this exact configuration."""
    every = cfg.unlearn.checkpoint_every
    if every == 0:
        return None
    fingerprint = {"config": cfg.model_dump(mode="json", exclude={"unlearn": {"checkpoint_every"}}),
                   "method": name, "options": method_options(cfg, name)}
    return Checkpointer(Path(out) / CHECKPOINTS / name, every, fingerprint, resume)


def run_method(ws: Workspace, name: str, progress: bool = True, extra_options: dict | None = None,
               checkpointer: Checkpointer | None = None) -> tuple[nn.Module, UnlearnOutcome, float]:
    assert ws.split is not None and ws.probe is not None and ws.scores is not None
    model = copy.deepcopy(ws.model)
    probe, split = ws.probe, ws.training_split()

    def targets_classified_unknown(m: nn.Module) -> float:
        z, owner = entity_codes(m, ws.tokenizer, ws.sae, split.forget, ws.layer)
        return probe.share_unknown(z, owner)

    # training phrasings only: the evaluation's held-out ones must not steer any method
    train_phrasing, n_tok = (False if ws.eval_heldout else None), ws.cfg.eval.max_new_tokens

    def forget_gap_to_floor(m: nn.Module) -> float:
        if ws.forget_floor is None:  # measured once, on first use: methods without the stop rule never pay for it
            ws.forget_floor = substituted_recall(ws.model, ws.tokenizer, split.forget, ws.unknown_eval,
                                                 heldout=train_phrasing, max_new_tokens=n_tok)
        return recall(m, ws.tokenizer, split.forget, train_phrasing, n_tok) - ws.forget_floor

    k = ws.cfg.latents.top_k
    mcfg = ws.cfg.model
    task = UnlearnTask(model=model, tokenizer=ws.tokenizer, split=split, layer=ws.layer, sae=ws.sae,
                       known_latents=ws.scores.top_known(k), unknown_latents=ws.scores.top_unknown(k),
                       steps=ws.cfg.unlearn.steps, targets_classified_unknown=targets_classified_unknown,
                       forget_gap_to_floor=forget_gap_to_floor,
                       seed=ws.cfg.seed, progress=progress,
                       lora={"rank": mcfg.lora_rank, "alpha": mcfg.lora_alpha} if mcfg.lora_for(name) else None,
                       gradient_checkpointing=mcfg.gradient_checkpointing, checkpointer=checkpointer)
    t0 = time.time()
    outcome = build_method(name, method_options(ws.cfg, name) | (extra_options or {})).unlearn(task)
    if outcome.message:
        log.warning("%s: %s", name, outcome.message)
    return task.model, outcome, time.time() - t0


# -- stage 6: evaluation --------------------------------------------------------------------------
def eval_facts(ws: Workspace, entities: list[Entity]):
    return [f for e in entities for f in e.facts if ws.eval_heldout is None or f.heldout]


def perplexity_texts(ws: Workspace, entities: list[Entity]) -> list[str]:
    """Sentences in the language the model knows: the training phrasings (cloze statements).

    The world's held-out templates are word orders that model never saw: their prompt words alone have
    perplexity ~41, and SAE-guided unlearning moved that to ~25 while the answers' rose 1.14 -> 1.45, so the
    sum read as a 33 % *improvement* (docs/metrics.md). On real models the held-out questions and passing
    mentions are templated text whose wording, not knowledge, would dominate the number.
    """
    return [f"{f.prompt} {f.answer} ." for e in entities for f in e.facts if not f.heldout]


def evaluate(ws: Workspace, model: nn.Module, outcome: UnlearnOutcome | None = None, baseline: dict | None = None) -> dict:
    """Metrics of ``model`` (after) against ``ws.model`` (before); ``baseline`` caches the "before" half."""
    before = baseline if baseline is not None else evaluate_state(ws, ws.model)
    with outcome.context(model) if outcome else nullcontext():
        after = evaluate_state(ws, model)
    out = ({f"{k}_before": v for k, v in before.items() if k not in FLOOR_KEYS}
           | {f"{k}_after": v for k, v in after.items()})
    out |= {k: v for k, v in before.items() if is_floor_key(k)}
    return out


def recall_by_phrasing(model: nn.Module, tok, forget: list[Entity], n_tok: int) -> dict[str, float]:
    """``forget_recall_form_<phrasing>`` for each held-out phrasing the targets' facts name."""
    return {f"forget_recall_form_{form}": recall(model, tok, _only_phrasing(forget, form), True, n_tok)
            for form in _heldout_forms(forget)}


def floors_by_phrasing(model: nn.Module, tok, forget: list[Entity], unknown: list[Entity], n_tok: int) -> dict[str, float]:
    """``unknown_recall_same_prompts_form_<phrasing>``: each held-out phrasing's floor, the targets' prompts
    of that phrasing with unknown names swapped in (the twin of ``recall_by_phrasing``)."""
    return {f"unknown_recall_same_prompts_form_{form}": substituted_recall(
                model, tok, _only_phrasing(forget, form), unknown, heldout=True, max_new_tokens=n_tok)
            for form in _heldout_forms(forget)}


def _heldout_forms(entities: list[Entity]) -> list[str]:
    return sorted({f.phrasing for e in entities for f in e.facts if f.heldout and f.phrasing})


def _only_phrasing(entities: list[Entity], form: str) -> list[Entity]:
    return [Entity(e.name, e.type, [f for f in e.facts if f.phrasing == form or not f.heldout]) for e in entities]


def _recall_floors(ws: Workspace, model: nn.Module) -> dict[str, float]:
    """Floors, on the original model: unknown entities (the edit is not about them) and the targets' own
    prompts with their names swapped for unknown ones, on the same phrasings as each recall."""
    split, tok, n_tok, held = ws.split, ws.tokenizer, ws.cfg.eval.max_new_tokens, ws.eval_heldout
    assert split is not None
    m = {"unknown_recall": recall(model, tok, ws.scored(ws.unknown_eval), held, n_tok),
         "unknown_recall_same_prompts": substituted_recall(model, tok, split.forget, ws.unknown_eval, heldout=held,
                                                           max_new_tokens=n_tok)}
    if ws.answerable_checked:
        m["unknown_recall_same_prompts_all_facts"] = substituted_recall(
            model, tok, split.forget, ws.unknown_eval, heldout=held, max_new_tokens=n_tok, include_answerable=True)
    if held:
        m["unknown_recall_train_phrasing"] = recall(model, tok, ws.scored(ws.unknown_eval), False, n_tok)
        m["unknown_recall_same_prompts_train_phrasing"] = substituted_recall(
            model, tok, split.forget, ws.unknown_eval, heldout=False, max_new_tokens=n_tok)
        m |= floors_by_phrasing(model, tok, split.forget, ws.unknown_eval, n_tok)
    return m


def is_floor_key(key: str) -> bool:
    """Measured on the original model only, reported without a suffix."""
    return key.startswith("unknown_recall") or key == "unknown_classified_unknown" or key in FLOOR_KEYS


def evaluate_state(ws: Workspace, model: nn.Module) -> dict:
    """Every metric of one model state; its weights do not change meanwhile, so a prompt asked by
    several metrics is decoded once."""
    with reuse_greedy_continuations(model):
        return _state_metrics(ws, model)


def _state_metrics(ws: Workspace, model: nn.Module) -> dict:
    split, tok, n_tok = ws.split, ws.tokenizer, ws.cfg.eval.max_new_tokens
    assert split is not None and ws.probe is not None
    m: dict[str, float] = {}
    held = ws.eval_heldout
    m["forget_recall"] = recall(model, tok, split.forget, held, n_tok)
    if ws.answerable_checked:  # the number before facts that made-up names complete were left out
        m["forget_recall_all_facts"] = recall(model, tok, split.forget, held, n_tok, include_answerable=True)
    # facts of other entities that name a target are about the target too: scored apart (metrics/entangled.py)
    retain, entangled_r = split_entangled(split.retain, split.forget)
    heldout_known, entangled_h = split_entangled(split.heldout_known, split.forget)
    retain, heldout_known = ws.scored(retain), ws.scored(heldout_known)
    m["retain_recall"] = recall(model, tok, retain, held, n_tok)
    m["heldout_known_recall"] = recall(model, tok, heldout_known, held, n_tok)
    if entangled_r + entangled_h:
        m["entangled_recall"] = recall(model, tok, entangled_r + entangled_h, held, n_tok)
    if held:  # the phrasings the losses train on: what suppression of the prompts alone would move
        m["forget_recall_train_phrasing"] = recall(model, tok, split.forget, False, n_tok)
        m["retain_recall_train_phrasing"] = recall(model, tok, retain, False, n_tok)
        m["heldout_known_recall_train_phrasing"] = recall(model, tok, heldout_known, False, n_tok)
        m |= recall_by_phrasing(model, tok, split.forget, n_tok)
    if model is ws.model:
        m |= _recall_floors(ws, model)
    acts_f, own_f = entity_activations(model, tok, split.forget, ws.layer)
    acts_u, own_u = entity_activations(model, tok, ws.unknown_eval, ws.layer)
    z_f, z_u = sae_codes(ws.sae, acts_f), sae_codes(ws.sae, acts_u)
    acts_k = entity_activations(model, tok, split.other_known, ws.layer)[0] \
        if ws.cfg.attack.enabled or model is ws.model else None
    if model is ws.model:  # the report's figures read the original model's codes again
        ws.original_codes = {"forget": z_f, "unknown": z_u, "known": sae_codes(ws.sae, acts_k)}
    m["forget_classified_unknown"] = ws.probe.share_unknown(z_f, own_f)
    m["unknown_classified_unknown"] = ws.probe.share_unknown(z_u, own_u)
    m["forget_probe_auc"] = ws.probe.auc(z_f, z_u)
    m["forget_dist_known"], m["forget_dist_unknown"] = centroid_distances(z_f, ws.mu_known, ws.mu_unknown)
    m["perplexity"] = perplexity(model, tok, perplexity_texts(ws, split.other_known))
    m["degenerate_rate"], _ = degenerate_rate(model, tok, [f.prompt for f in eval_facts(ws, split.forget)])
    if ws.world is not None:  # the world model was taught to answer "no" for entities it does not know
        says_no = greedy_continuations(model, tok, [f"do you know {e.name} ?" for e in split.forget], 1)
        m["forget_says_unknown"] = float(np.mean([s.strip().startswith("no") for s in says_no]))
    if ws.cfg.attack.enabled:
        m |= state_attacks(ws, model, acts_f, acts_u, acts_k, floors=model is ws.model)
    return m


# -- stage 7: outputs -----------------------------------------------------------------------------
def save_model_dir(model: nn.Module, tokenizer, target: Path) -> Path:
    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return atomic_save_dir(target, write)


def write_run_outputs(out: Path, ws: Workspace, results: dict[str, tuple[dict, UnlearnOutcome]], edited: dict[str, nn.Module],
                      preface: str = "") -> dict:
    """metrics.json, latents.json, config.yaml, plots, and the report as report.md and report.html;
    ``preface`` (Markdown, e.g. the comparison table) opens the report."""
    from sae_unlearn.report.figures import run_figures
    from sae_unlearn.report.html import render_html
    from sae_unlearn.report.markdown import write_report

    assert ws.split is not None and ws.scores is not None
    metrics = {
        "model": str(ws.model_dir), "layer": ws.layer, "sae": str(ws.sae_dir),
        "forget": [e.name for e in ws.split.forget], "skipped_forget": ws.skipped_forget,
        # per target: [training facts the original model recalled, training facts] (issue 21)
        "forget_known_facts": {n: list(c) for n, c in ws.forget_known_facts.items()},
        # --name-only: per name, the type read off the model and the facts it gave (what the losses saw)
        "name_only_targets": {d.name: {"type": d.type, "facts": [[f.prompt, f.answer] for f in d.facts]}
                              for d in ws.described},
        "n_known": ws.n_known,
        "n_facts_answerable": sum(f.answerable for e in ws.candidates for f in e.facts),
        "known_all_answerable": ws.all_answerable,
        "n_candidates": len(ws.candidates),
        "n_retain": len(ws.split.retain), "n_heldout_known": len(ws.split.heldout_known),
        "n_unknown_eval": len(ws.unknown_eval), "max_scored_entities": ws.cfg.eval.max_scored_entities,
        "timings": ws.timings, "processes": parallel.num_processes(),
        "fsdp": sharding.fsdp_launched(),
        "methods": {name: m for name, (m, _) in results.items()},
    }
    plots = run_figures(out, ws, results, edited)
    prompts = [f.prompt for f in eval_facts(ws, ws.split.forget[:5])][:8]
    samples = [{"prompt": p, "before": b.strip()} for p, b in zip(prompts, greedy_continuations(ws.model, ws.tokenizer, prompts, 8))]
    for name, model in edited.items():
        with results[name][1].context(model):
            for row, text in zip(samples, greedy_continuations(model, ws.tokenizer, prompts, 8)):
                row[name] = text.strip()
    notes = [f"model: `{ws.model_dir}`, layer {ws.layer}, SAE: `{ws.sae_dir}`",
             f"{len(ws.split.forget)} targets: {', '.join(e.name for e in ws.split.forget)}",
             f"retain set (in the loss) {len(ws.split.retain)} entities; held-out known (never in any loss) "
             f"{len(ws.split.heldout_known)}; unknown entities for evaluation {len(ws.unknown_eval)}"
             + (f" (recall scored on a seeded sample of at most {k} of each)" if (k := ws.cfg.eval.max_scored_entities) else ""),
             ("recall is on held-out phrasings (never in training or in any unlearning loss): questions, passing "
              "mentions in a longer sentence, and the name with an aside (`*_train_phrasing_*`: the cloze statements "
              "the losses train on; `forget_recall_form_*`: each held-out phrasing alone)" if ws.world is None else
              "recall is on held-out phrasings (never in training or in the unlearning loss)") if ws.eval_heldout else
             "recall is on all facts of the entity file (held-out phrasings are off; docs/real_models.md)"]
    partial = {n: c for n, c in ws.forget_known_facts.items() if c[0] < c[1]}
    if partial:
        notes.append("targets known in part (facts recalled of their training facts, original model): "
                     + ", ".join(f"{n} {k}/{t}" for n, (k, t) in partial.items()))
    if ws.answerable_checked:
        notes.append(f"{metrics['n_facts_answerable']} facts of known entities are completed for made-up names too "
                     "(they test the prompt, not the entity) and are left out of recall and of known/unknown "
                     f"({len(ws.all_answerable)} entities had no other fact); `forget_recall_all_facts` keeps them "
                     "(docs/metrics.md)")
    if ws.skipped_forget:
        notes.append(f"skipped (not known to the model, nothing to forget): {', '.join(ws.skipped_forget)}")
    if ws.described:
        notes.append("name-only: the losses saw only what the model says about each name ("
                     + "; ".join(f"{d.name}: a {d.type}, {len(d.facts)} facts" for d in ws.described if d.known)
                     + "); recall reads the entity file's held-out phrasings of the names it has")
    if ws.probing:
        notes.append(f"probing: {metrics['n_known']} of {len(ws.candidates)} entities known "
                     f"(recall >= {ws.cfg.eval.known_threshold:.0%} of their facts)")
    for name, (_, outcome) in results.items():
        notes.append(f"{name}: {outcome.steps_run} steps, stopped by {outcome.stopped_reason}. {outcome.message}".strip())
    latent_rows = ws.scores.table(ws.cfg.latents.top_k)
    atomic_write_json(out / "latents.json", latent_rows)
    atomic_write_json(out / "metrics.json", metrics)
    report = write_report(out, "sae-unlearn report", metrics, plots, latent_rows, samples, notes, preface)
    atomic_write_text(out / "report.md", report)
    atomic_write_text(out / "report.html", render_html(report, out, "sae-unlearn report"))
    atomic_write_text(out / "config.yaml", dump_config(ws.cfg))
    return metrics


def method_metrics(ws: Workspace, model: nn.Module, outcome: UnlearnOutcome, seconds: float, baseline: dict) -> dict:
    m = evaluate(ws, model, outcome, baseline)
    t0 = time.time()
    relearned = relearn_metrics(ws, model, outcome.inference_context, ws.relearn_floors)
    if relearned:
        m |= relearned | {"relearn_seconds": time.time() - t0}
    m["seconds"] = seconds
    m["steps"] = outcome.steps_run
    m["stopped_reason"] = outcome.stopped_reason
    return m


ALL_METHODS = ("sae_guided", "gradient_ascent", "grad_diff", "npo", "rmu", "sae_clamp")
# The main hyperparameter of each method and the values ``compare --sweep`` tries (defaults in the middle).
SWEEPS: dict[str, tuple[str, tuple[float, ...]]] = {
    "sae_guided": ("w_retain", (10.0, 30.0, 100.0)),
    "gradient_ascent": ("lr", (3e-5, 1e-4, 3e-4)),
    "grad_diff": ("lr", (3e-5, 1e-4, 3e-4)),
    "npo": ("beta", (0.05, 0.1, 0.5)),
    "rmu": ("alpha", (10.0, 100.0, 1200.0)),
    "sae_clamp": ("multiplier", (5.0, 20.0, 80.0)),
}


def prepare_workspace(cfg: DemoConfig, progress: bool = True) -> tuple[Workspace, dict]:
    """Stages 1-4 on the synthetic world, plus the "before" metrics every method shares."""
    ws = build_workspace(cfg, progress)
    get_sae(ws, progress)
    with reuse_greedy_continuations(ws.model):  # probing's answers are the "before" state's too
        make_split(ws)
        select_latents(ws)
        t0 = time.time()
        baseline = evaluate_state(ws, ws.model)
        ws.timings["evaluate_original"] = time.time() - t0
    t0 = time.time()
    ws.relearn_floors = relearn_floors(ws)
    ws.timings["relearn_floors"] = time.time() - t0
    return ws, baseline


def check_resumable(cfg: DemoConfig, out: Path, methods: tuple[str, ...], overwrite: bool, resume: bool) -> Path:
    """Prepare ``out``; with ``resume``, refuse checkpoints of another configuration before any compute."""
    out = parallel.main_only(lambda: prepare_output_dir(out, overwrite, resume))
    if resume:
        for name in methods:
            ckpt = method_checkpointer(cfg, name, out, resume)
            if ckpt is not None:
                ckpt.verify()
    return out


def run_methods(ws: Workspace, baseline: dict, methods: tuple[str, ...], progress: bool = True,
                out: Path | None = None, resume: bool = False):
    """Each method from a fresh copy of the original weights, same split, budget and evaluation.

    With ``out``, each method checkpoints under OUT/checkpoints (a finished one keeps its final
    state there until the outputs are written, so a resumed comparison skips it)."""
    results: dict[str, tuple[dict, UnlearnOutcome]] = {}
    edited: dict[str, nn.Module] = {}
    for name in methods:
        ckpt = method_checkpointer(ws.cfg, name, out, resume) if out is not None else None
        model, outcome, seconds = run_method(ws, name, progress, checkpointer=ckpt)
        results[name] = (method_metrics(ws, model, outcome, seconds, baseline), outcome)
        edited[name] = model
    return results, edited


def save_edited(out: Path, ws: Workspace, results: dict, edited: dict[str, nn.Module]) -> None:
    for name, model in edited.items():
        target = out / ("model" if len(edited) == 1 else f"model_{name}")
        outcome = results[name][1]
        if outcome.inference_spec is not None:  # an inference-time method: the weights are unchanged
            atomic_write_json(out / f"{name}_inference_hook.json", outcome.inference_spec | {"sae": str(ws.sae_dir)})
        else:
            save_model_dir(model, ws.tokenizer, target)


def run_demo(cfg: DemoConfig, out: Path, overwrite: bool = False, progress: bool = True,
             methods: tuple[str, ...] = ("sae_guided",), resume: bool = False) -> dict:
    """The whole chain; writes metrics.json, report.md, plots, config, model. ``resume`` continues a
    killed run in ``out`` from its last checkpoint (same config: same result)."""
    progress = progress and parallel.is_main()  # one set of progress bars under a launcher
    for name in methods:
        get_method(name)  # fail on a bad name before any compute
    out = check_resumable(cfg, out, methods, overwrite, resume)
    ws, baseline = prepare_workspace(cfg, progress)
    results, edited = run_methods(ws, baseline, methods, progress, out, resume)

    def write() -> dict:
        metrics = write_run_outputs(out, ws, results, edited)
        save_edited(out, ws, results, edited)
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)  # every output is in place: nothing left to resume
        return metrics

    return parallel.main_only(write)


def run_sweeps(ws: Workspace, methods: tuple[str, ...], progress: bool = True) -> dict[str, list[dict]]:
    """Forget/retain recall of each method at each value of its main hyperparameter."""
    curves: dict[str, list[dict]] = {}
    for name in methods:
        param, values = SWEEPS[name]
        curves[name] = []
        for value in values:
            model, outcome, _ = run_method(ws, name, progress, {param: value})
            with outcome.context(model):
                point = {param: value,
                         "forget_recall_after": recall(model, ws.tokenizer, ws.split.forget, ws.eval_heldout, ws.cfg.eval.max_new_tokens),
                         "retain_recall_after": recall(model, ws.tokenizer, ws.scored(split_entangled(ws.split.retain, ws.split.forget)[0]),
                                                       ws.eval_heldout, ws.cfg.eval.max_new_tokens)}
            curves[name].append(point)
    return curves


def run_compare(cfg: DemoConfig, out: Path, overwrite: bool = False, progress: bool = True,
                methods: tuple[str, ...] = ALL_METHODS, save_models: bool = False, sweep: bool = False,
                resume: bool = False) -> dict:
    """Every method on the same world, split, budget and evaluation: compare.json, compare.md, a plot."""
    progress = progress and parallel.is_main()  # one set of progress bars under a launcher
    from sae_unlearn.report.compare import compare_table, tradeoff_plot

    for name in methods:
        get_method(name)
    out = check_resumable(cfg, out, methods, overwrite, resume)
    ws, baseline = prepare_workspace(cfg, progress)
    results, edited = run_methods(ws, baseline, methods, progress, out, resume)
    sweeps = run_sweeps(ws, methods, progress) if sweep else None

    def write() -> dict:
        methods_metrics = {name: m for name, (m, _) in results.items()}
        (out / "plots").mkdir(exist_ok=True)
        tradeoff_plot(methods_metrics, out / "plots" / "tradeoff.png", sweeps)
        table = "## Comparison\n\n" + compare_table(methods_metrics) + "\n\n![trade-off](plots/tradeoff.png)\n"
        metrics = write_run_outputs(out, ws, results, edited, preface=table)
        if sweeps:
            metrics["sweeps"] = sweeps
        atomic_write_json(out / "compare.json", metrics)
        atomic_write_text(out / "compare.md", "# sae-unlearn comparison\n\n" + table)
        if save_models:
            save_edited(out, ws, results, edited)
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
        return metrics

    return parallel.main_only(write)
