"""Real models: load the LM, read the entity file, add fictional unknowns, build the SAE's text.

The synthetic world brings its own corpus and ground truth; a real model brings neither, so this
module supplies them: entities come from a JSONL file (the bundled one by default), never-seen
entities are generated names of the same types, and the SAE trains on every entity prompt plus the
model's own sampled continuations (the only text we can produce offline).
"""

from __future__ import annotations

import random

import torch
from torch import nn

from sae_unlearn.entities.fictional import fictional_entities
from sae_unlearn.entities.phrasings import with_heldout_phrasings
from sae_unlearn.entities.real import bundled_entities_path, load_entity_file
from sae_unlearn.entities.types import Entity
from sae_unlearn.metrics.recall import continuations

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def real_entities(file, n_fictional: int, seed: int, heldout_phrasings: bool = True) -> tuple[list[Entity], list[Entity]]:
    """(entities of the file, fictional entities of the same types and prompts); ``heldout_phrasings``
    adds held-out phrasings to every entity that has none (entities/phrasings.py)."""
    entities = load_entity_file(file or bundled_entities_path())
    if heldout_phrasings:
        entities = [with_heldout_phrasings(e) for e in entities]
    return entities, fictional_entities(entities, n_fictional, seed=seed, avoid={e.name for e in entities})


def sampled_continuations(model: nn.Module, tokenizer, prompts: list[str], max_new_tokens: int, seed: int) -> list[str]:
    """Prompt plus seeded nucleus sample (greedy decoding of a small model loops on one phrase: poor SAE data)."""
    torch.manual_seed(seed)
    new = continuations(model, tokenizer, prompts, max_new_tokens, by_length=False, do_sample=True, top_p=0.95, temperature=1.0, top_k=0)
    return [p + n for p, n in zip(prompts, new)]


def sae_corpus(model: nn.Module, tokenizer, entities: list[Entity], n_generations: int, n_tokens: int, seed: int) -> list[str]:
    """Every training-phrasing fact as a sentence, plus ``n_generations`` sampled continuations of random
    ones (the held-out phrasings stay out: the SAE is the same with or without them)."""
    facts = [f"{f.prompt} {f.answer}." for e in entities for f in e.facts if not f.heldout]
    prompts = [f.prompt for e in entities for f in e.facts if not f.heldout]
    rng = random.Random(seed)
    seeds = rng.sample(prompts, min(n_generations, len(prompts)))
    return facts + (sampled_continuations(model, tokenizer, seeds, n_tokens, seed) if seeds else [])
