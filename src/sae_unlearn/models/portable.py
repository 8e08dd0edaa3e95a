"""Saved edits that travel: a LoRA adapter names its base by what another machine can resolve.

Why: peft writes the base model's local path into ``adapter_config.json``; for a built-in model that is this
machine's cache (``/home/me/.cache/sae-unlearn/builtin/smollm2-135m``), which exists nowhere else. We record the
upstream hub id there instead (plain ``peft`` loading then finds the original model on a connected machine), and
in ``base_model.json`` the name the run was given, which ``load_unlearned`` (and ``evaluate``/``attack``, through
the run's config) resolve offline through the same built-in path as the run. Decision: docs/real_models.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from sae_unlearn.errors import UserInputError
from sae_unlearn.models.builtin import BUILTIN_MODELS
from sae_unlearn.models.layers import CausalLM
from sae_unlearn.models.loading import load_causal_lm

ADAPTER_CONFIG = "adapter_config.json"
BASE_FILE = "base_model.json"


def record_base(adapter_dir: Path, model_name: str | None, model_dir: Path) -> None:
    """Point a just-saved adapter at a base any machine can resolve (``model_name``: as the user gave it)."""
    name = model_name or str(model_dir)  # the synthetic world's model: rebuilt from the run's config elsewhere
    spec = BUILTIN_MODELS.get(name)
    config_path = Path(adapter_dir) / ADAPTER_CONFIG
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = spec.hub_id if spec is not None and spec.hub_id else name
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    record = {"model": name, "builtin": spec is not None}
    if spec is not None:
        record["note"] = (
            f"{name} is sae-unlearn's built-in {spec.description}; load the exact base with "
            f"sae_unlearn.load_unlearned(this directory). {config['base_model_name_or_path']} (the adapter's "
            "base_model_name_or_path) is the original it was quantized from."
        )
    (Path(adapter_dir) / BASE_FILE).write_text(json.dumps(record, indent=2) + "\n")


def base_of(adapter_dir: Path) -> str:
    """What an adapter's base is called: ``base_model.json`` when we wrote one, else peft's own record."""
    adapter_dir = Path(adapter_dir)
    if (adapter_dir / BASE_FILE).is_file():
        return str(json.loads((adapter_dir / BASE_FILE).read_text())["model"])
    return str(json.loads((adapter_dir / ADAPTER_CONFIG).read_text())["base_model_name_or_path"])


def load_unlearned(
    path: str | Path, device: str = "cpu", dtype: torch.dtype = torch.float32
) -> tuple[CausalLM, object]:
    """An edited model a run saved (full weights, or a LoRA adapter over its recorded base), ready to generate."""
    path = Path(path)
    if (path / ADAPTER_CONFIG).is_file():
        from peft import PeftModel

        base, tokenizer = load_causal_lm(base_of(path), device=device, dtype=dtype)
        return PeftModel.from_pretrained(base, str(path)).eval(), tokenizer
    if (path / "config.json").is_file():
        return load_causal_lm(path, device=device, dtype=dtype)
    raise UserInputError(
        f"{path} is not a saved model: expected a directory with config.json (full weights) or {ADAPTER_CONFIG} (LoRA)."
    )
