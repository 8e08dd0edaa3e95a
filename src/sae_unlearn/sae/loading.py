"""Load any SAE sae-lens can load, and refuse one that does not fit the model and layer."""

from __future__ import annotations

import difflib
from pathlib import Path

from sae_lens import SAE
from torch import nn

from sae_unlearn.errors import UserInputError
from sae_unlearn.models.layers import hidden_size, hook_name


def load_sae(source: str | Path, sae_id: str | None = None, device: str = "cpu") -> SAE:
    """``source`` is a local sae-lens directory, or a sae-lens release name with ``sae_id``."""
    check_sae_source(source, sae_id)
    path = Path(source)
    if path.exists():
        return SAE.load_from_disk(path, device=device)
    assert sae_id is not None  # check_sae_source
    try:
        return SAE.from_pretrained(str(source), sae_id, device=device)
    except Exception as err:  # sae-lens surfaces the hub's, requests' and httpx's errors unwrapped: name them once
        raise UserInputError(
            f"The SAE {source}:{sae_id} could not be fetched ({type(err).__name__}: {err}). sae-lens downloads "
            "pretrained SAEs from the Hugging Face Hub, which this machine cannot reach (or the files are not in its "
            "cache). Offline, leave out --sae: sae-unlearn then trains an SAE on the model itself and caches it "
            "($SAE_UNLEARN_CACHE/saes). Or save it on a connected machine "
            f"(python -c \"from sae_lens import SAE; SAE.from_pretrained('{source}', '{sae_id}').save_model('DIR')\") "
            "and pass --sae DIR."
        ) from err


def check_sae_source(source: str | Path, sae_id: str | None) -> None:
    """A local SAE directory, or a release and id that sae-lens' registry lists; anything else stops the run before
    anything loads (no network needed: the registry ships with sae-lens)."""
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    path = Path(source)
    if path.exists():
        if not (path / "cfg.json").exists():
            raise UserInputError(f"{path} is not an sae-lens SAE directory (no cfg.json in it).")
        return
    release = str(source)
    if sae_id is None:
        raise UserInputError(
            f"SAE {release!r} is neither a local directory nor given with an id; pass a directory, or a sae-lens "
            "release with its id (--sae RELEASE:ID, e.g. gemma-scope-2-270m-pt-res:layer_9_width_16k_l0_medium)."
        )
    registry = get_pretrained_saes_directory()
    if release not in registry:
        close = difflib.get_close_matches(release, list(registry), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UserInputError(
            f"{release!r} is not a directory here nor a release in sae-lens' registry.{hint} "
            "The releases: sae_lens.loading.pretrained_saes_directory.get_pretrained_saes_directory()."
        )
    ids = list(registry[release].saes_map)
    if sae_id not in ids:
        close = difflib.get_close_matches(sae_id, ids, n=3, cutoff=0.5) or ids[:3]
        raise UserInputError(f"Release {release!r} has no SAE {sae_id!r} ({len(ids)} ids, e.g. {', '.join(close)}).")


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
