"""SAE latent clamping at inference (Farrell et al. 2024, "Applying sparse autoencoders to unlearn
knowledge in language models", arXiv 2410.19278). No training: a forward hook at layer L encodes the
residual with the SAE and, wherever a selected latent fires, clamps it to ``-c``; the change is applied through
the decoder, so the SAE's reconstruction error passes through untouched.

Which latents: as the paper, features specific to the forget topic (``features: topic``): the latents that fire
on the targets' training prompts (every token, as the paper reads its forget corpus) and on less than
``retain_frequency`` of the retained entities' tokens, ranked by how often they fire on the targets (SAEBench's
unlearning evaluation, by the same authors, selects so: ``evals/unlearning/utils/feature_activation.py``
``get_top_features``, with retain thresholds 0.001 / 0.01 and 10 / 20 features). The generic
"known entity" latents (``features: known_entity``, the only choice before 2026-12-05) fire for every familiar
entity, so clamping them costs the retained ones as much as the targets. ``c`` is a multiple of each latent's
mean positive activation on the targets (the paper searches absolute values for Gemma-2B-it; absolute values do
not transfer across SAEs); the equal tuning budget (stages/tuning.py) tunes that multiple."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Literal

import torch
from pydantic import Field
from torch import nn

from sae_unlearn.errors import UserInputError
from sae_unlearn.methods.base import Unlearner, UnlearnOutcome, UnlearnTask
from sae_unlearn.methods.options import MethodOptions
from sae_unlearn.methods.registry import register_method
from sae_unlearn.models.capture import capture_all_positions, capture_entity_activations
from sae_unlearn.models.layers import decoder_layers
from sae_unlearn.models.prompts import encode_facts


class SAEClampConfig(MethodOptions):
    multiplier: float = Field(20.0, gt=0)
    features: Literal["topic", "known_entity"] = "topic"
    n_latents: int | None = Field(None, ge=1)  # None: topic 20 (SAEBench: 10 or 20), known_entity all selected
    retain_frequency: float = Field(0.01, gt=0, le=1)  # topic: a latent must fire on less of the retained tokens


TOPIC_LATENTS = 20


@register_method
class SAEClampUnlearner(Unlearner):
    name = "sae_clamp"
    config_cls = SAEClampConfig

    def unlearn(self, task: UnlearnTask) -> UnlearnOutcome:
        forget = encode_facts(task.tokenizer, task.split.forget)  # training phrasings only, never the evaluation's

        def encode(acts: torch.Tensor) -> torch.Tensor:
            return task.sae.encode(acts.to(task.sae.W_dec.device, task.sae.W_dec.dtype))

        with torch.no_grad():
            if self.cfg.features == "topic":
                z_forget = encode(capture_all_positions(task.model, forget, task.layer))
                z_retain = encode(
                    capture_all_positions(task.model, encode_facts(task.tokenizer, task.split.retain), task.layer)
                )
                latents = topic_latents(
                    z_forget, z_retain, self.cfg.n_latents or TOPIC_LATENTS, self.cfg.retain_frequency
                )
                z = z_forget[:, latents]
            else:
                latents = task.known_latents[: self.cfg.n_latents] if self.cfg.n_latents else list(task.known_latents)
                z = encode(capture_entity_activations(task.model, forget, task.layer))[:, latents]
        mean_active = torch.where(z > 0, z, torch.nan).nanmean(0).nan_to_num(1.0)
        values = (-self.cfg.multiplier * mean_active).float().cpu().tolist()
        spec = {"method": self.name, "layer": task.layer, "latents": latents, "clamp_values": values}
        sae, layer = task.sae, task.layer

        def context(model: nn.Module):
            return clamp_latents(model, sae, layer, latents, values)

        return UnlearnOutcome(steps_run=0, stopped_reason="no_training", inference_context=context, inference_spec=spec)


def topic_latents(z_forget: torch.Tensor, z_retain: torch.Tensor, n: int, retain_frequency: float) -> list[int]:
    """The ``n`` latents that fire on most of the targets' tokens among those that fire on less than
    ``retain_frequency`` of the retained entities' tokens (Farrell et al.'s selection by activation frequency on
    the forget and retain corpora). A latent that never fires on the targets is never chosen."""
    on_forget = (z_forget > 0).float().mean(0)
    on_retain = (z_retain > 0).float().mean(0)
    eligible = (on_forget > 0) & (on_retain < retain_frequency)
    if not eligible.any():
        raise UserInputError(
            f"sae_clamp: no SAE latent fires on the targets' prompts and on less than {retain_frequency:g} of the "
            "retained entities' tokens; raise unlearn.methods.sae_clamp.retain_frequency, or use "
            "features: known_entity."
        )
    score = torch.where(eligible, on_forget, torch.full_like(on_forget, -1.0))
    order = torch.argsort(score, descending=True, stable=True)
    return [int(i) for i in order[: min(n, int(eligible.sum()))]]


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
