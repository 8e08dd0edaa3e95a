"""Residual-stream capture through a forward hook that also stops the forward pass.

Why a hook and an exception rather than ``output_hidden_states``: the layers above the one we
read are never run, so capture costs a truncated forward pass, on any HF architecture.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from sae_unlearn import parallel
from sae_unlearn.models.layers import CausalLM, check_layer, decoder_layers, hidden_size, model_device
from sae_unlearn.models.prompts import EncodedPrompts


class _StopForward(Exception):
    def __init__(self, hidden: torch.Tensor):
        self.hidden = hidden


@contextmanager
def _stop_after(model: nn.Module, layer: int) -> Iterator[None]:
    def hook(_module, _inputs, output):
        hidden = output[0] if isinstance(output, tuple) else output
        raise _StopForward(hidden)

    handle = decoder_layers(model)[layer].register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def residual_at_layer(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, layer: int
) -> torch.Tensor:
    """[batch, seq, d_model] residual after block ``layer``; differentiable, upper layers skipped."""
    with _stop_after(model, layer):
        try:
            model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        except _StopForward as stop:
            return stop.hidden
    raise RuntimeError(f"layer {layer} was not reached in the forward pass")


def _own_batches(model: nn.Module, prompts: EncodedPrompts, batch_size: int) -> list[EncodedPrompts]:
    """This process's rows (all rows in one process), in batches on the model's device; callers
    gather the results with ``parallel.gather_rows``."""
    device = model_device(model)
    mine = parallel.shard(len(prompts))
    return [
        prompts.slice(start, min(start + batch_size, mine.stop)).to(device)
        for start in range(mine.start, mine.stop, batch_size)
    ]


@torch.no_grad()
def capture_entity_activations(
    model: nn.Module,
    prompts: EncodedPrompts,
    layer: int,
    batch_size: int = 64,
    progress: bool = False,
) -> torch.Tensor:
    """Activations at the entity's last token, [n_prompts, d_model] (float32, on CPU); each distinct
    prefix up to that token runs once (``EncodedPrompts.entity_prefixes``)."""
    check_layer(model, layer)
    prefixes, owner = prompts.entity_prefixes()
    out = [torch.empty(0, hidden_size(model))]
    for batch in tqdm(_own_batches(model, prefixes, batch_size), disable=not progress, desc=f"capture layer {layer}"):
        hidden = residual_at_layer(model, batch.input_ids, batch.attention_mask, layer)
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        out.append(hidden[rows, batch.entity_last].float().cpu())
    return parallel.gather_rows(torch.cat(out))[owner]


@torch.no_grad()
def capture_all_positions(model: nn.Module, prompts: EncodedPrompts, layer: int, batch_size: int = 64) -> torch.Tensor:
    """Every real token's activation (SAE training data), [n_tokens, d_model]."""
    out = [torch.empty(0, hidden_size(model))]
    for batch in _own_batches(model, prompts, batch_size):
        hidden = residual_at_layer(model, batch.input_ids, batch.attention_mask, layer)
        out.append(hidden[batch.attention_mask.bool()].float().cpu())
    return parallel.gather_rows(torch.cat(out))


@contextmanager
def _record_layer(model: nn.Module, layer: int, sink: list, replacement: torch.Tensor | None = None) -> Iterator[None]:
    """Record block ``layer``'s output; with ``replacement``, the blocks above read that instead."""

    def hook(_m, _i, out):
        hidden = out[0] if isinstance(out, tuple) else out
        sink.append(hidden)
        if replacement is None:
            return None
        return (replacement,) + tuple(out[1:]) if isinstance(out, tuple) else replacement

    handle = decoder_layers(model)[layer].register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def head_reads_only(model: CausalLM, rows: torch.Tensor, cols: torch.Tensor) -> Iterator[None]:
    """Feed the vocabulary projection only positions ``(rows[i], cols[i])``: the model's logits come
    out as [1, len(rows), vocab], in that order.

    Why a pre-hook on the output embedding: the projection over every position is most of a small
    model's cost (SmolLM2: 49k x 576 per token) while a loss or a next-token read needs a few
    positions; whatever the model applies after it (Gemma-2's logit soft-capping) stays exactly as
    it is. ``logits_to_keep`` cannot do this: it keeps the same positions in every row.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model

    def gather(_module, args):
        return (args[0][rows, cols].unsqueeze(0),) + tuple(args[1:])

    handle = base.get_output_embeddings().register_forward_pre_hook(gather)
    try:
        yield
    finally:
        handle.remove()


def residual_and_last_logits(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    layer: int,
    last: torch.Tensor,
    replace_residual: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass giving the residual after block ``layer`` [batch, seq, d] and the logits at
    each row's position ``last`` [batch, vocab]. ``replace_residual`` (same shape) is fed to the
    blocks above ``layer`` in place of their own input: what they make of a given representation."""
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)
    sink: list[torch.Tensor] = []
    with head_reads_only(model, rows, last.to(input_ids.device)), _record_layer(model, layer, sink, replace_residual):
        logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    return sink[0], logits[0]
