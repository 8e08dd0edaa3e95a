"""Readout attack: the edited model's blocks up to the SAE's layer, read by the original model's blocks above it.

Why: the method's claim is that the target's representation at layer L becomes a stranger's, so the facts are
gone from it. A method can instead teach the blocks above L to hide facts that the representation still carries
(output suppression); the original upper blocks, never told to hide anything, then read the facts out of it.
On the synthetic world (docs/results.md, session 44) SAE-guided with the mean of strangers as its reference forgot
down to 0.10-0.19 while its layer-L representation, read this way, still gave 0.30-0.68 of the facts: the upper
blocks did most of the forgetting. An attacker with the original weights (an open model's release) can run
exactly this stitch.

The stitch swaps whole blocks (modules, adapters included), so it needs no knowledge of a block's parameters,
and the input embeddings (SAE-guided's ``train_name_embeddings`` edits the names' rows); the blocks above L and the
output head stay the original's, tied or not.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from sae_unlearn.models.layers import CausalLM, decoder_layers


def readout_copy(original: CausalLM, edited: CausalLM, layer: int) -> nn.Module:
    """A copy of ``original`` whose input embeddings and decoder blocks 0..``layer`` are copies of ``edited``'s."""
    stitched: CausalLM = copy.deepcopy(original)
    blocks, edited_blocks = decoder_layers(stitched), decoder_layers(edited)
    if len(blocks) != len(edited_blocks):
        raise ValueError(f"the edited model has {len(edited_blocks)} decoder blocks, the original {len(blocks)}")
    for i in range(layer + 1):
        blocks[i] = copy.deepcopy(edited_blocks[i])
    # the input embeddings are below layer L too (``train_name_embeddings`` edits them); a module of its own, so
    # a head tied to them stays the original's
    stitched.set_input_embeddings(copy.deepcopy(edited.get_input_embeddings()))
    return stitched


def same_above(original: CausalLM, edited: nn.Module, layer: int) -> bool:
    """Whether every weight outside ``edited``'s blocks 0..``layer`` is ``original``'s: then the stitch *is*
    ``edited`` (RMU, SAE clamping, SAE-guided with the upper blocks frozen, as in the SmolLM2 demo), and reading
    it again would decode the same prompts twice."""
    lower = {id(p) for model in (original, edited) for b in decoder_layers(model)[: layer + 1] for p in b.parameters()}
    mine = [p for p in original.parameters() if id(p) not in lower]
    theirs = [p for p in edited.parameters() if id(p) not in lower]
    return len(mine) == len(theirs) and all(a.shape == b.shape and torch.equal(a, b) for a, b in zip(mine, theirs))
