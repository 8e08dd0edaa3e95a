"""The quantisation attack's metric (attacks/quantization.py): the targets' recall, on held-out phrasings, after
the decoder weights are rounded to 8 and 4 bits; on the original model it is the ceiling the rounding leaves.
"""

from __future__ import annotations

from torch import nn

from sae_unlearn.attacks.quantization import quantized_copy
from sae_unlearn.config import QUANTIZE_WIDTHS
from sae_unlearn.context import EvaluationContext
from sae_unlearn.metrics.recall import recall
from sae_unlearn.metrics.registry import Metric, register, register_attack


def quantized_recall(ctx: EvaluationContext, model: nn.Module, original: bool) -> dict[str, float]:
    """``forget_recall_quant<bits>`` for each of ``attack.quantize_bits``."""
    out = {}
    for bits in ctx.cfg.attack.quantize_bits:
        rounded = quantized_copy(model, bits)
        out[f"forget_recall_quant{bits}"] = recall(
            rounded, ctx.tokenizer, ctx.split.forget, ctx.eval_heldout, ctx.cfg.eval.max_new_tokens
        )
        del rounded
    return out


register_attack("quantisation", "Does rounding the weights to 8 or 4 bits bring suppressed facts back?", extended=True)
register(
    *(
        Metric(
            f"forget_recall_quant{bits}",
            f"forget recall after {bits}-bit rounding of the weights (held-out phrasings)",
            better="floor",
            floors=("unknown_recall_same_prompts",),
            section="attacks",
            attack="quantisation",
            compare=bits == 4,
            compute=quantized_recall,
        )
        for bits in QUANTIZE_WIDTHS
    )
)
