"""Find the decoder blocks of any Hugging Face decoder-only model, and name hook points.

Layer ``L`` means the residual stream *after* decoder block ``L`` (0-indexed): TransformerLens'
``blocks.L.hook_resid_post``, the hook name sae-lens SAEs (Gemma Scope, Llama Scope) record,
and ``hidden_states[L + 1]`` in Hugging Face terms.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import torch
from torch import nn

from sae_unlearn.errors import UserInputError

# A transformers causal LM or a peft wrapper of one. Loose on purpose: the two share the methods we call (generate,
# save_pretrained, get_output_embeddings, get_base_model) but no base class, and torch's stubs type any attribute
# of an nn.Module they do not know as ``Tensor | Module``, which is never callable.
CausalLM: TypeAlias = Any

# Attribute paths of the block list across HF architectures (Llama/Gemma/Qwen/Mistral, GPT-2, ...).
_BLOCK_PATHS = (
    "model.layers",
    "transformer.h",
    "model.decoder.layers",
    "gpt_neox.layers",
    "model.language_model.layers",
)


def decoder_layers(model: CausalLM) -> nn.ModuleList:
    if hasattr(model, "get_base_model"):  # a peft wrapper: the blocks live in the base model
        model = model.get_base_model()
    for path in _BLOCK_PATHS:
        obj: object = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList):
            return obj
    raise UserInputError(
        f"Cannot find the decoder layers of {type(model).__name__}; supported layouts: {', '.join(_BLOCK_PATHS)}."
    )


def num_layers(model: nn.Module) -> int:
    return len(decoder_layers(model))


def check_layer(model: nn.Module, layer: int) -> int:
    n = num_layers(model)
    if not 0 <= layer < n:
        raise UserInputError(f"Layer {layer} is out of range: this model has {n} layers, so use 0..{n - 1}.")
    return layer


def hook_name(layer: int) -> str:
    return f"blocks.{layer}.hook_resid_post"


def hidden_size(model: CausalLM) -> int:
    cfg = model.config
    text_cfg = getattr(cfg, "text_config", None) or cfg
    return int(getattr(text_cfg, "hidden_size", None) or text_cfg.n_embd)


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device
