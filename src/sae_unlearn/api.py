"""The Python API: forget entities in a model you already hold (a notebook, a training script), through the same
stages, methods and metrics as the command line, without writing anything unless asked.

    from sae_unlearn import unlearn
    result = unlearn(model, tokenizer, forget=["Marie Curie"], config={"unlearn": {"steps": 60}})
    result.metrics["forget_recall_after"], result.model   # the edited copy; ``model`` itself is untouched
    result.save("runs/curie")                             # metrics.json, report.md/.html, the edited model
    model, tokenizer = load_unlearned("runs/curie/model")  # later, on any machine (a LoRA adapter finds its base)

Nothing is cached under the model's name: weights in memory may differ from any files of that name, so probing
and a trained SAE are computed for these weights (pass ``sae=`` to reuse one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from torch import nn

from sae_unlearn.config import DemoConfig, load_config
from sae_unlearn.entities.real import bundled_entities_path, entity_sets, load_entity_file
from sae_unlearn.entities.types import Entity
from sae_unlearn.errors import UserInputError
from sae_unlearn.evaluation.evaluate import evaluate as evaluate_against_original
from sae_unlearn.evaluation.evaluate import method_metrics
from sae_unlearn.io_utils import prepare_output_dir
from sae_unlearn.methods import UnlearnOutcome, get_method
from sae_unlearn.models.portable import load_unlearned
from sae_unlearn.report.outputs import save_edited, write_run_outputs
from sae_unlearn.runs import prepare_stages
from sae_unlearn.sae.loading import check_sae_matches
from sae_unlearn.stages.sae import with_sae
from sae_unlearn.stages.subject import check_forget_names, subject_from_model
from sae_unlearn.stages.unlearn import run_method
from sae_unlearn.state import Workspace

__all__ = ["UnlearnResult", "evaluate", "load_unlearned", "unlearn"]


@dataclass
class UnlearnResult:
    """The edited copy of the model (a peft wrapper when LoRA is on), its metrics as ``metrics.json`` writes one
    method's record, the method's outcome (steps, loss and its terms) and the workspace (split, SAE, probes)."""

    model: nn.Module
    metrics: dict
    outcome: UnlearnOutcome
    workspace: Workspace
    method: str

    def save(self, out: str | Path, overwrite: bool = False) -> Path:
        """The CLI's outputs for this run in ``out`` (refused if it holds files, unless ``overwrite``)."""
        if "forget_recall_after" not in self.metrics:
            raise UserInputError(
                "This result was made with evaluate=False: its report would have no numbers. "
                "Run unlearn(..., evaluate=True) to save it, or save result.model yourself."
            )
        out = prepare_output_dir(Path(out), overwrite)
        results = {self.method: (self.metrics, self.outcome)}
        write_run_outputs(out, self.workspace, results, {self.method: self.model})
        save_edited(out, self.workspace, results, {self.method: self.model})
        return out


def unlearn(
    model: nn.Module,
    tokenizer: Any,
    forget: Sequence[str],
    *,
    entities: Sequence[Entity] | str | Path | None = None,
    unknown: Sequence[Entity] | None = None,
    sae: Any = None,
    config: DemoConfig | dict | str | Path | None = None,
    method: str = "sae_guided",
    evaluate: bool = True,
    progress: bool = True,
) -> UnlearnResult:
    """Forget the named entities in a copy of ``model``.

    ``entities``: what the model may know (``Entity`` objects or a JSONL file; default: the bundled real
    entities); the names in ``forget`` must be among them unless ``config`` sets ``unlearn.name_only``.
    ``unknown``: entities the model never saw, the reference of "forgotten" (default: made-up names of the same
    types). ``sae``: a sae-lens SAE for the config's layer (default: one is trained on these weights).
    ``config``: a ``DemoConfig``, a mapping or a YAML file of the run settings (docs/config.md).
    ``evaluate=False`` skips the before/after metrics and attacks (``metrics`` then holds the run's bookkeeping).
    """
    get_method(method)  # a bad name fails before any compute
    name = getattr(model, "name_or_path", "") or type(model).__name__
    cfg = _config(config, forget, method, name)
    known, never_seen = _entity_sets(cfg, entities, unknown)
    check_forget_names(cfg, known, "the given entities")
    ws = subject_from_model(cfg, model, tokenizer, known, never_seen, Path(f"in-memory:{name}"), cacheable=False)
    if sae is not None:
        check_sae_matches(sae, model, ws.layer)
        ws = with_sae(ws, sae.eval(), Path("given-in-memory"))
    ws, before = prepare_stages(ws, progress, evaluate)
    edited, outcome, seconds = run_method(ws, method, progress)
    metrics = (
        method_metrics(ws.evaluation, edited, outcome, seconds, before)
        if before is not None
        else {"seconds": seconds, "steps": outcome.steps_run, "stopped_reason": outcome.stopped_reason}
    )
    return UnlearnResult(edited, metrics, outcome, ws, method)


def evaluate(result: UnlearnResult, model: nn.Module | None = None) -> dict:
    """Every metric of ``model`` (default: the result's edited model; e.g. one you fine-tuned further) against the
    original, on the result's split: ``*_before``, ``*_after`` and the floors, as in ``metrics.json``."""
    edited = result.model if model is None else model
    return evaluate_against_original(result.workspace.evaluation, edited, result.outcome if model is None else None)


def _config(config: DemoConfig | dict | str | Path | None, forget: Sequence[str], method: str, name: str) -> DemoConfig:
    overrides = {"unlearn.forget": list(forget), "unlearn.method": method, "model.name": name}
    if isinstance(config, DemoConfig):
        return load_config(None, overrides, base=config.model_dump(mode="json"))
    if isinstance(config, dict):
        return load_config(None, overrides, base=config)
    return load_config(Path(config) if config is not None else None, overrides)


def _entity_sets(
    cfg: DemoConfig, entities: Sequence[Entity] | str | Path | None, unknown: Sequence[Entity] | None
) -> tuple[list[Entity], list[Entity]]:
    if entities is None or isinstance(entities, (str, Path)):
        known = load_entity_file(Path(entities) if entities is not None else bundled_entities_path())
    else:
        known = list(entities)
    return entity_sets(
        known,
        cfg.entities.n_fictional,
        cfg.seed,
        cfg.entities.heldout_phrasings,
        list(unknown) if unknown is not None else None,
    )
