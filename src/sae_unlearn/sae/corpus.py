"""The text an SAE trains on for a real model: the entity file's facts plus the model's own samples.

A real model brings no corpus we may ship, so the SAE sees every training-phrasing fact as a sentence and
seeded samples of the model continuing them (the only text we can produce offline).
"""

from __future__ import annotations

import random

import torch
from torch import nn

from sae_unlearn.entities.types import Entity
from sae_unlearn.models.generation import continuations


def sampled_continuations(model: nn.Module, tokenizer, prompts: list[str], max_new_tokens: int, seed: int) -> list[str]:
    """Prompt plus seeded nucleus sample (greedy decoding of a small model loops on one phrase: poor SAE data)."""
    torch.manual_seed(seed)
    new = continuations(
        model, tokenizer, prompts, max_new_tokens, by_length=False, do_sample=True, top_p=0.95, temperature=1.0, top_k=0
    )
    return [p + n for p, n in zip(prompts, new)]


def sae_corpus(
    model: nn.Module, tokenizer, entities: list[Entity], n_generations: int, n_tokens: int, seed: int
) -> list[str]:
    """Every training-phrasing fact as a sentence, plus ``n_generations`` sampled continuations of random
    ones (the held-out phrasings stay out: the SAE is the same with or without them)."""
    facts = [f"{f.prompt} {f.answer}." for e in entities for f in e.facts if not f.heldout]
    prompts = [f.prompt for e in entities for f in e.facts if not f.heldout]
    rng = random.Random(seed)
    seeds = rng.sample(prompts, min(n_generations, len(prompts)))
    return facts + (sampled_continuations(model, tokenizer, seeds, n_tokens, seed) if seeds else [])
