"""``sae-unlearn attack``: every attack on models a run saved (or any model directory), later.

The run's ``config.yaml`` rebuilds the same world, SAE, split and probes (seeded and cached, so this
is cheap); each saved model is then evaluated and attacked exactly as inside the run.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from torch import nn

from sae_unlearn import parallel
from sae_unlearn.config import load_config
from sae_unlearn.errors import UserInputError
from sae_unlearn.methods import UnlearnOutcome
from sae_unlearn.methods.sae_clamp import context_from_spec
from sae_unlearn.models.loading import load_causal_lm

HOOK_SUFFIX = "_inference_hook.json"


def saved_models(run_dir: Path) -> dict[str, Path]:
    """method name -> saved model directory or inference-hook file, as ``save_edited`` names them."""
    found: dict[str, Path] = {}
    metrics_file = run_dir / "metrics.json"
    methods = list(json.loads(metrics_file.read_text())["methods"]) if metrics_file.exists() else []
    if (run_dir / "model").is_dir():
        found[methods[0] if len(methods) == 1 else "model"] = run_dir / "model"
    for path in sorted(run_dir.glob("model_*")):
        if path.is_dir():
            found[path.name[len("model_"):]] = path
    for path in sorted(run_dir.glob(f"*{HOOK_SUFFIX}")):
        found[path.name[: -len(HOOK_SUFFIX)]] = path
    return found


def check_saved_model(path: Path) -> Path:
    """Fail before any compute when ``path`` is nothing ``load_edited`` can load."""
    path = Path(path)
    if not ((path.is_file() and path.name.endswith(HOOK_SUFFIX)) or (path / "adapter_config.json").exists()
            or (path / "config.json").exists()):
        raise UserInputError(f"{path} is not a saved model: expected a directory with config.json (full weights) or "
                             f"adapter_config.json (LoRA), or a *{HOOK_SUFFIX} file.")
    return path


def load_edited(ws, path: Path) -> tuple[nn.Module, UnlearnOutcome]:
    """A full model directory, a LoRA adapter directory (over the run's original model), or a saved
    inference hook (over the original model)."""
    path = check_saved_model(path)
    outcome = UnlearnOutcome(0, "loaded")
    if path.is_file() and path.name.endswith(HOOK_SUFFIX):
        outcome.inference_context = context_from_spec(json.loads(path.read_text()), ws.sae)
        return copy.deepcopy(ws.model), outcome
    if (path / "adapter_config.json").exists():
        from peft import PeftModel

        return PeftModel.from_pretrained(copy.deepcopy(ws.model), str(path)).eval(), outcome
    return load_causal_lm(path, device=ws.cfg.device, dtype=next(ws.model.parameters()).dtype)[0], outcome


def attack_run(run_dir: Path | None, out: Path, model: Path | None = None, config: Path | None = None,
               overrides: dict | None = None, overwrite: bool = False, progress: bool = True) -> dict:
    """Attack the models saved in ``run_dir`` (or ``model``), with the run's config; writes a run's
    outputs (metrics.json with every attack key, report.md/.html, plots) into ``out``."""
    from sae_unlearn.io_utils import prepare_output_dir
    from sae_unlearn.pipeline import method_metrics, prepare_workspace, write_run_outputs

    if run_dir is None and (config is None or model is None):
        raise UserInputError("Give --run (a directory written by demo, run or compare), or --config (the run's "
                             "config.yaml) with --model.")
    if config is None:
        config = run_dir / "config.yaml"
        if not config.exists():
            raise UserInputError(f"{run_dir} has no config.yaml: is it an output directory of demo, run or compare?")
    targets = {"model": model} if model is not None else saved_models(run_dir)
    if not targets:
        raise UserInputError(f"No saved model in {run_dir}: compare saves models only with --save-models; or pass "
                             "--model DIR.")
    for path in targets.values():
        check_saved_model(path)
    cfg = load_config(config, overrides)
    out = parallel.main_only(lambda: prepare_output_dir(out, overwrite))  # one writer under a launcher
    ws, baseline = prepare_workspace(cfg, progress and parallel.is_main())
    _check_same_split(ws, run_dir)
    results, edited = {}, {}
    for name, path in targets.items():
        edited_model, outcome = load_edited(ws, path)
        results[name] = (method_metrics(ws, edited_model, outcome, 0.0, baseline) | {"source": str(path)}, outcome)
        edited[name] = edited_model
    return parallel.main_only(lambda: write_run_outputs(out, ws, results, edited))


def _check_same_split(ws, run_dir: Path | None) -> None:
    """The rebuilt targets must be the run's targets, or every number would be about other entities."""
    if run_dir is None or not (run_dir / "metrics.json").exists():
        return
    saved = json.loads((run_dir / "metrics.json").read_text()).get("forget")
    rebuilt = [e.name for e in ws.split.forget]
    if saved is not None and saved != rebuilt:
        raise UserInputError(f"The run's targets {saved} differ from the ones rebuilt from its config {rebuilt}; "
                             "the entity file or model changed since the run. Attack with the run's own inputs.")
