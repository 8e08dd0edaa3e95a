"""Stage 5, unlearning: one method from a fresh copy of the original weights, with its options, its
checkpoints and the stop rules that read the workspace.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import time
from pathlib import Path

from torch import nn

from sae_unlearn.config import DemoConfig
from sae_unlearn.entities.types import Entity
from sae_unlearn.io_utils import CHECKPOINTS, atomic_write_json
from sae_unlearn.methods import UnlearnOutcome, UnlearnTask, build_method
from sae_unlearn.methods.checkpoint import Checkpointer
from sae_unlearn.metrics.alignment import entity_codes
from sae_unlearn.metrics.recall import recall
from sae_unlearn.state import Workspace

log = logging.getLogger("sae_unlearn")
EVALUATED = "evaluated"  # OUT/checkpoints/evaluated/<method>.json: finished evaluations (``save_evaluation``)


def method_options(cfg: DemoConfig, name: str) -> dict:
    """``unlearn.methods.<name>`` (checked against the method's typed settings when the config loads)."""
    return cfg.unlearn.options_for(name)


def config_fingerprint(cfg: DemoConfig) -> dict:
    """The configuration a run's saved records are tied to: all of it but how often it checkpoints."""
    return cfg.model_dump(mode="json", exclude={"unlearn": {"checkpoint_every"}})


def method_checkpointer(
    cfg: DemoConfig, name: str, out: Path, resume: bool, extra_options: dict | None = None
) -> Checkpointer | None:
    """Checkpoints of method ``name`` under OUT/checkpoints/<name> (a tuning trial's, with ``extra_options``,
    under OUT/checkpoints/<name>@<setting>=<value>), tied to this exact configuration."""
    every = cfg.unlearn.checkpoint_every
    if every == 0:
        return None
    fingerprint = {
        "config": config_fingerprint(cfg),
        "method": name,
        "options": method_options(cfg, name) | (extra_options or {}),
    }
    trial = "".join(f"@{key}={value:g}" for key, value in sorted((extra_options or {}).items()))
    return Checkpointer(Path(out) / CHECKPOINTS / f"{name}{trial}", every, fingerprint, resume)


def save_evaluation(cfg: DemoConfig, name: str, out: Path, record: dict) -> None:
    """Method ``name``'s evaluation (``record``: its metrics and, when tuned, its tuning record and curve), written
    as soon as it is measured, next to its checkpoints and tied to the same configuration: a resumed run reloads it
    instead of evaluating again (~2.5 min per method on SmolLM2), and a long comparison shows each finished
    method's numbers (OUT/checkpoints/evaluated/<name>.json) before its end. Nothing without checkpoints."""
    ckpt = method_checkpointer(cfg, name, out, False)
    if ckpt is not None:
        atomic_write_json(
            Path(out) / CHECKPOINTS / EVALUATED / f"{name}.json", {"fingerprint": ckpt.fingerprint} | record
        )


def load_evaluation(cfg: DemoConfig, name: str, out: Path, sweep: bool) -> dict | None:
    """The record ``save_evaluation`` wrote for this configuration and the same choice of sweep, else None."""
    path = Path(out) / CHECKPOINTS / EVALUATED / f"{name}.json"
    ckpt = method_checkpointer(cfg, name, out, True)
    if ckpt is None or not path.is_file():
        return None
    saved = json.loads(path.read_text())
    if saved.get("fingerprint") != ckpt.fingerprint or saved.get("sweep") != sweep:
        return None
    return saved


def validation_forget_gap(ws: Workspace, model: nn.Module) -> float:
    """The targets' recall on the validation split minus the same prompts' recall with unknown names
    (``Workspace.forget_floor``: measured once on the original model, on first use). Read by the
    baselines' stop rule and by the tuning (stages/tuning.py); never by the evaluation."""
    return recall(model, ws.tokenizer, ws.validation_targets, None, ws.cfg.eval.max_new_tokens) - ws.forget_floor


def validation_retain_recall(ws: Workspace, model: nn.Module) -> float:
    """The retained entities' recall on the validation split (the retain loss trains their training phrasings)."""
    assert ws.split is not None
    return recall(model, ws.tokenizer, ws.validation_of(ws.scored(ws.split.retain)), None, ws.cfg.eval.max_new_tokens)


def run_method(
    ws: Workspace,
    name: str,
    progress: bool = True,
    extra_options: dict | None = None,
    checkpointer: Checkpointer | None = None,
) -> tuple[nn.Module, UnlearnOutcome, float]:
    assert ws.split is not None and ws.probe is not None and ws.scores is not None
    model = copy.deepcopy(ws.model)
    probe, split = ws.probe, ws.training_split()

    def classified_unknown(m: nn.Module, entities: list[Entity]) -> float:
        z, owner = entity_codes(m, ws.tokenizer, ws.sae, entities, ws.layer)
        return probe.share_unknown(z, owner)

    def targets_classified_unknown(m: nn.Module) -> float:
        return classified_unknown(m, split.forget)

    @functools.cache
    def unknown_classified_unknown() -> float:
        # the unknown entities the probe was not fitted on (it calls every one of its own training set unknown)
        return classified_unknown(ws.model, ws.unknown_eval)

    def forget_gap_to_floor(m: nn.Module) -> float:
        return validation_forget_gap(ws, m)

    k = ws.cfg.latents.top_k
    mcfg = ws.cfg.model
    task = UnlearnTask(
        model=model,
        tokenizer=ws.tokenizer,
        split=split,
        layer=ws.layer,
        sae=ws.sae,
        known_latents=ws.scores.top_known(k),
        unknown_latents=ws.scores.top_unknown(k),
        steps=ws.cfg.unlearn.steps,
        targets_classified_unknown=targets_classified_unknown,
        unknown_classified_unknown=unknown_classified_unknown if ws.unknown_eval else None,
        forget_gap_to_floor=forget_gap_to_floor,
        seed=ws.cfg.seed,
        progress=progress,
        lora={"rank": mcfg.lora_rank, "alpha": mcfg.lora_alpha} if mcfg.lora_for(name) else None,
        gradient_checkpointing=mcfg.gradient_checkpointing,
        checkpointer=checkpointer,
    )
    t0 = time.time()
    outcome = build_method(name, method_options(ws.cfg, name) | (extra_options or {})).unlearn(task)
    if outcome.message:
        log.warning("%s: %s", name, outcome.message)
    return task.model, outcome, time.time() - t0
