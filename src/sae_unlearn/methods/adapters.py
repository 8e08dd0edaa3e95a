"""Memory options for the gradient methods: a peft LoRA adapter instead of full weights, and
gradient checkpointing. Both wrap the model before a method sees it, so methods stay unaware."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, cast

from torch import nn

from sae_unlearn.models.layers import CausalLM


def is_peft_model(model: nn.Module) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def wrap_with_lora(
    model: CausalLM,
    layers: list[int],
    rank: int,
    alpha: float,
    seed: int = 0,
    only: Callable[[str], bool] | None = None,
) -> nn.Module:
    """A LoRA adapter on every linear layer of ``layers`` (the blocks the method would train), or on those whose
    module name ``only`` accepts (a method that trains part of a block, as RMU its MLP output projections); the
    base weights stay frozen and untouched, and saving writes only the adapter."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers.pytorch_utils import Conv1D

    from sae_unlearn.models.layers import decoder_layers

    blocks = decoder_layers(model)
    wanted = {id(blocks[i]) for i in layers}
    # full module names (peft matches them exactly); GPT-2's projections are Conv1D, which peft supports
    targets = [
        name
        for name, mod in model.named_modules()
        if isinstance(mod, (nn.Linear, Conv1D))
        and any(id(b) in wanted for b in _ancestors(model, name))
        and (only is None or only(name))
    ]
    torch.manual_seed(seed)  # LoRA's A matrices are random: same seed, same run
    # peft annotates lora_alpha as int but scales by alpha / r in float: a float alpha is used as given
    cfg = LoraConfig(
        r=rank,
        lora_alpha=cast(int, alpha),
        lora_dropout=0.0,
        target_modules=targets,
        bias="none",
        fan_in_fan_out=any(isinstance(model.get_submodule(t), Conv1D) for t in targets),
    )
    return get_peft_model(model, cfg)


@contextmanager
def merged_adapter(model: CausalLM) -> Iterator[None]:
    """Inside this block a LoRA-wrapped model runs with its adapter folded into the base weights (peft's
    ``merge_adapter``), and unfolded after, so the object a user gets back is unchanged. Why: unfolded,
    every adapted layer runs two more matmuls per token; one recall on the SmolLM2 demo took 28.4 s
    instead of 22.1 s. Any other model, or one already folded, is left as it is."""
    if not is_peft_model(model) or _is_merged(model):
        yield
        return
    model.merge_adapter()
    try:
        yield
    finally:
        model.unmerge_adapter()


def _is_merged(model: nn.Module) -> bool:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return any(m.merged for m in model.modules() if isinstance(m, BaseTunerLayer))


def _ancestors(model: nn.Module, name: str) -> list[nn.Module]:
    parts = name.split(".")
    return [model.get_submodule(".".join(parts[:i])) for i in range(1, len(parts))]


def enable_gradient_checkpointing(model: CausalLM) -> None:
    """Recompute block activations in the backward pass instead of storing them (HF's own switch)."""
    # transformers >= 5.x renamed the switch (the old name still works, with a deprecation warning)
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()


def deterministic_train_mode(model: nn.Module) -> None:
    """Training mode (HF runs checkpointing only when ``training``) with every dropout off, so an
    edit is a deterministic function of the seed."""
    model.train(True)
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.eval()


def disable_gradient_checkpointing(model: CausalLM) -> None:
    disable = getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable
    disable()
