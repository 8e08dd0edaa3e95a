"""Quantisation attack: the edited model's decoder weights rounded to 8 or 4 bits, as a user deploying it would.

Why: an edit learned as small weight changes can fall below a quantisation step, and rounding then brings the
original weights, and the knowledge, back (Zhang et al. 2024, arXiv 2410.16454: 21 % -> 83 % of forgotten facts
after 4-bit quantisation of gradient-based unlearning). Knowledge that is gone from the representation should
stay gone.

Round-to-nearest with a zero point per group of ``group_size`` input weights of each output row (the usual
4-bit RTN baseline, group 128), applied as quantise-then-dequantise to a copy of the model. Written here rather
than taken from a library: the attack needs only the quantised weights' outputs, which fake quantisation gives
exactly, while the maintained kernels (bitsandbytes, torchao, quanto) target GPUs or add native builds this
CPU-only tool does not need.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from sae_unlearn.models.layers import CausalLM, decoder_layers

GROUP_SIZE = 128


def round_to_nearest(weight: torch.Tensor, bits: int, group_size: int = GROUP_SIZE) -> torch.Tensor:
    """``weight`` [out, in] after quantising each group of ``group_size`` consecutive inputs of a row to
    ``bits``-bit integers with its own scale and zero point, and back. A row whose width ``group_size`` does
    not divide is one group."""
    if not 2 <= bits <= 16:
        raise ValueError(f"bits must be 2..16, got {bits}")
    rows, cols = weight.shape
    size = group_size if cols % group_size == 0 else cols
    w = weight.detach().float().reshape(rows, cols // size, size)
    low, high = w.amin(-1, keepdim=True).clamp_max(0), w.amax(-1, keepdim=True).clamp_min(0)
    levels = 2**bits - 1
    scale = ((high - low) / levels).clamp_min(1e-12)
    zero = (-low / scale).round()
    q = (w / scale + zero).round().clamp(0, levels)
    return ((q - zero) * scale).reshape(rows, cols).to(weight.dtype)


@torch.no_grad()
def quantized_copy(model: CausalLM, bits: int, group_size: int = GROUP_SIZE) -> nn.Module:
    """A copy of ``model`` whose decoder blocks' linear weights are quantised (embeddings and the output head
    stay, as GPTQ/AWQ leave them). A LoRA adapter's own factors stay too: folded in (evaluation's
    ``merged_adapter``), the base weights carry the edit."""
    quantized = copy.deepcopy(model)
    for block in decoder_layers(quantized):
        for name, module in block.named_modules():
            if "lora_" in name:
                continue
            if isinstance(module, nn.Linear):
                module.weight.copy_(round_to_nearest(module.weight, bits, group_size))
            elif isinstance(module, Conv1D):  # GPT-2 stores [in, out]
                module.weight.copy_(round_to_nearest(module.weight.T, bits, group_size).T)
    return quantized
