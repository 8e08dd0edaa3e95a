"""The readout attack's metric (attacks/readout.py): the targets' recall, on held-out phrasings, when the original
model's blocks above the SAE's layer read the edited model's layer-L representation. Before: the original model's
own recall (the stitch is the original model); floor: the same prompts with unknown names."""

from __future__ import annotations

from torch import nn

from sae_unlearn.attacks.readout import readout_copy, same_above
from sae_unlearn.context import EvaluationContext
from sae_unlearn.metrics.recall import recall
from sae_unlearn.metrics.registry import Metric, register, register_attack

READOUT = "readout"


def readout_recall(ctx: EvaluationContext, model: nn.Module, original: bool) -> dict[str, float]:
    """``forget_recall_readout``: recall of the stitched model (the original's own when ``model`` is it)."""
    unchanged_above = original or same_above(ctx.model, model, ctx.layer)  # the stitch would be ``model`` itself
    stitched = model if unchanged_above else readout_copy(ctx.model, model, ctx.layer)
    value = recall(stitched, ctx.tokenizer, ctx.split.forget, ctx.eval_heldout, ctx.cfg.eval.max_new_tokens)
    return {"forget_recall_readout": value}


register_attack(
    READOUT,
    "Read by the original model's layers above the SAE's layer, does the edited representation still carry the "
    "facts (the upper layers only learned to hide them)?",
)
register(
    Metric(
        "forget_recall_readout",
        "forget recall with the original upper layers reading the edited layer-L representation (held-out phrasings)",
        better="floor",
        floors=("unknown_recall_same_prompts",),
        section="attacks",
        attack=READOUT,
        compare=True,
        compute=readout_recall,
    )
)
