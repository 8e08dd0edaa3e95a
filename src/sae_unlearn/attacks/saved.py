"""``sae-unlearn attack``: every attack on models a run saved (or any model directory), later.

The run's ``config.yaml`` rebuilds the same world, SAE, split and probes (seeded and cached, so this
is cheap); each saved model is then evaluated and attacked exactly as inside the run.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from torch import nn

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
            found[path.name[len("model_") :]] = path
    for path in sorted(run_dir.glob(f"*{HOOK_SUFFIX}")):
        found[path.name[: -len(HOOK_SUFFIX)]] = path
    return found


def check_saved_model(path: Path) -> Path:
    """Fail before any compute when ``path`` is nothing ``load_edited`` can load."""
    path = Path(path)
    if not (
        (path.is_file() and path.name.endswith(HOOK_SUFFIX))
        or (path / "adapter_config.json").exists()
        or (path / "config.json").exists()
    ):
        raise UserInputError(
            f"{path} is not a saved model: expected a directory with config.json (full weights) or "
            f"adapter_config.json (LoRA), or a *{HOOK_SUFFIX} file."
        )
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
