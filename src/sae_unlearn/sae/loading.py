"""Load any SAE sae-lens can load, and refuse one that does not fit the model and layer."""

from __future__ import annotations

from pathlib import Path

from sae_lens import SAE
from torch import nn

from sae_unlearn.errors import UserInputError
from sae_unlearn.models.layers import hidden_size, hook_name


def load_sae(source: str | Path, sae_id: str | None = None, device: str = "cpu") -> SAE:
    """``source`` is a local sae-lens directory, or a sae-lens release name with ``sae_id``."""
    path = Path(source)
    if path.exists():
        if not (path / "cfg.json").exists():
            raise UserInputError(f"{path} is not an sae-lens SAE directory (no cfg.json in it).")
        return SAE.load_from_disk(path, device=device)
    if sae_id is None:
        raise UserInputError(
            f"SAE {source!r} is neither a local directory nor given with an id; pass a directory, or a "
            "sae-lens release with --sae-id (e.g. gemma-scope-2b-pt-res-canonical layer_12/width_16k/canonical)."
        )
    return SAE.from_pretrained(str(source), sae_id, device=device)


def check_sae_matches(sae: SAE, model: nn.Module, layer: int) -> None:
    """Width and hook point must match, or every latent we read would be meaningless."""
    width = hidden_size(model)
    if sae.cfg.d_in != width:
        raise UserInputError(
            f"SAE input width {sae.cfg.d_in} does not match the model's hidden size {width}; "
            "use an SAE trained on this model."
        )
    sae_hook = getattr(sae.cfg.metadata, "hook_name", None)
    expected = hook_name(layer)
    if sae_hook and sae_hook != expected:
        raise UserInputError(
            f"SAE hook point {sae_hook!r} does not match layer {layer} ({expected!r}); "
            f"pass the layer the SAE was trained on, or an SAE for layer {layer}."
        )
