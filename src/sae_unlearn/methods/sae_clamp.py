"""SAE latent clamping at inference (Farrell et al. 2024, "Applying sparse autoencoders to unlearn
knowledge in language models", arXiv 2410.19278). No training: a forward hook at layer L encodes the
residual with the SAE and, wherever a selected known-entity latent fires, clamps it to ``-c``; the change
is applied through the decoder, so the SAE's reconstruction error passes through untouched.
``c`` is expressed as a multiple of each latent's mean positive activation (the paper searches absolute
values for Gemma-2B-it; absolute values do not transfer across SAEs)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from sae_unlearn.methods.base import Unlearner, UnlearnOutcome, UnlearnTask
from sae_unlearn.methods.options import MethodOptions
from sae_unlearn.methods.registry import register_method
from sae_unlearn.models.capture import capture_entity_activations
from sae_unlearn.models.layers import decoder_layers
from sae_unlearn.models.prompts import encode_facts


class SAEClampConfig(MethodOptions):
    multiplier: float = 20.0
    n_latents: int | None = None  # default: all selected known-entity latents


@register_method
class SAEClampUnlearner(Unlearner):
    name = "sae_clamp"
    config_cls = SAEClampConfig

    def unlearn(self, task: UnlearnTask) -> UnlearnOutcome:
        latents = task.known_latents[: self.cfg.n_latents] if self.cfg.n_latents else list(task.known_latents)
        acts = capture_entity_activations(
            task.model, encode_facts(task.tokenizer, task.split.forget, heldout=None), task.layer
        )
        with torch.no_grad():
            z = task.sae.encode(acts)[:, latents]
        mean_active = torch.where(z > 0, z, torch.nan).nanmean(0).nan_to_num(1.0)
        values = (-self.cfg.multiplier * mean_active).tolist()
        spec = {"method": self.name, "layer": task.layer, "latents": latents, "clamp_values": values}
        sae, layer = task.sae, task.layer

        def context(model: nn.Module):
            return clamp_latents(model, sae, layer, latents, values)

        return UnlearnOutcome(steps_run=0, stopped_reason="no_training", inference_context=context, inference_spec=spec)


def context_from_spec(spec: dict, sae):
    """The saved hook (``<name>_inference_hook.json``) as an evaluation context, for a reloaded run."""
    layer, latents, values = (
        int(spec["layer"]),
        [int(i) for i in spec["latents"]],
        [float(v) for v in spec["clamp_values"]],
    )
    return lambda model: clamp_latents(model, sae, layer, latents, values)


@contextmanager
def clamp_latents(model: nn.Module, sae, layer: int, latents: list[int], values: list[float]) -> Iterator[None]:
    idx = torch.tensor(latents)
    target = torch.tensor(values)

    def hook(_module, _inputs, output):
        hidden = output[0] if isinstance(output, tuple) else output
        z = sae.encode(hidden.to(sae.W_dec.dtype))[..., idx]
        delta = torch.where(z > 0, target.to(z) - z, torch.zeros_like(z))
        new = hidden + (delta @ sae.W_dec[idx]).to(hidden.dtype)
        return (new,) + tuple(output[1:]) if isinstance(output, tuple) else new

    handle = decoder_layers(model)[layer].register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
