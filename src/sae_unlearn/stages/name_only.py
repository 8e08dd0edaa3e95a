"""Name-only targets: what the model itself says about a bare name becomes what is forgotten.

Why: a user asked to remove a person often knows only whom, not which facts the model holds. With
``--name-only`` nothing of the entity file's facts about the targets reaches any loss; the tool

1. reads the name's type off the model's own representation: the residual at the name's last token,
   in a few neutral contexts, is nearest to the centroid of one type of known file entities (types
   cluster in the residual stream; this needs no facts about the name);
2. asks the model that type's most common relations from the file ("{e} was born in") and keeps the
   greedy answers it gives with confidence (first-token probability ``min_confidence``), that do not
   copy a word of the prompt, and that it does not give for made-up names of the type
   (metrics/answerable.py): the facts that show it knows the name;
3. calls the name unknown to the model when none is left (skipped with a warning; an error with
   ``--strict``).

Evaluation still reads the file's held-out phrasings of a name that is in the file (the facts the user
never gave), and the described facts' held-out phrasings otherwise. Decision: docs/real_models.md.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sae_unlearn.entities.contexts import CONTEXTS
from sae_unlearn.entities.fictional import fictional_entities
from sae_unlearn.entities.phrasings import TRAIN_PHRASING, relation_key, with_heldout_phrasings
from sae_unlearn.entities.types import Entity, Fact
from sae_unlearn.metrics.answerable import mark_answerable
from sae_unlearn.models.capture import capture_entity_activations, residual_and_last_logits
from sae_unlearn.models.generation import greedy_continuations
from sae_unlearn.models.layers import model_device
from sae_unlearn.models.prompts import encode_prompts
from sae_unlearn.state import DescribedName

NEUTRAL_CONTEXTS = CONTEXTS[:4]  # "{e}", "Tell me about {e}.", ...: they name the entity and ask nothing
_LEAD_WORDS = {
    "the",
    "a",
    "an",
    "in",
    "on",
    "at",
    "of",
    "by",
    "to",
    "from",
    "for",
    "and",
    "as",
    "is",
    "was",
    "his",
    "her",
    "its",
    "their",
    "about",
    "around",
    "over",
    "nearly",
    "some",
}
_WORD = re.compile(r"[^\W_][\w'’.-]*", re.UNICODE)


@dataclass(frozen=True)
class NameOnlySettings:
    relations_per_type: int = 12  # the type's most common relations in the entity file
    min_confidence: float = 0.3  # first-token probability of the model's answer
    made_up_names: int = 4  # made-up names per type for the answerable check
    max_new_tokens: int = 4


def relations_by_type(entities: list[Entity], per_type: int) -> dict[str, list[str]]:
    """Per type, the file's training relations as templates with ``{e}``, most common first."""
    counts: dict[str, Counter] = {}
    for e in entities:
        for f in e.facts:
            if not f.heldout:
                template = relation_key(e.name, f)
                if "{e}" in template:
                    counts.setdefault(e.type, Counter())[template] += 1
    return {t: [tpl for tpl, _ in c.most_common(per_type)] for t, c in sorted(counts.items())}


def _name_activations(model: nn.Module, tokenizer, names: list[str], layer: int) -> torch.Tensor:
    """Mean residual at each name's last token over the neutral contexts: [n_names, d_model]."""
    prompts = [c.replace("{e}", n) for n in names for c in NEUTRAL_CONTEXTS]
    enc = encode_prompts(tokenizer, prompts, [n for n in names for _ in NEUTRAL_CONTEXTS])
    acts = capture_entity_activations(model, enc, layer)
    return acts.view(len(names), len(NEUTRAL_CONTEXTS), -1).mean(1)


def infer_types(model: nn.Module, tokenizer, names: list[str], references: list[Entity], layer: int) -> list[str]:
    """Each name's type: the nearest (cosine, after centring) type centroid of ``references``."""
    ref = _name_activations(model, tokenizer, [e.name for e in references], layer)
    mine = _name_activations(model, tokenizer, names, layer)
    centre = ref.mean(0)
    types = sorted({e.type for e in references})
    owner = np.array([e.type for e in references])
    centroids = torch.stack([ref[torch.from_numpy(owner == t)].mean(0) for t in types]) - centre
    sims = torch.nn.functional.normalize(mine - centre, dim=-1) @ torch.nn.functional.normalize(centroids, dim=-1).T
    return [types[int(i)] for i in sims.argmax(1)]


def leading_answer(continuation: str) -> str:
    """The continuation's words up to its first content word ("the United States" -> "the United"):
    what recall will ask the continuation to start with."""
    words = _WORD.findall(continuation.split("\n")[0])
    out = []
    for word in words:
        out.append(word.rstrip("."))
        if word.lower() not in _LEAD_WORDS:
            return " ".join(out)
    return ""


def echoes_prompt(answer: str, prompt: str) -> bool:
    """The answer's content word repeats the start of a word of the prompt ("Zorvath Quillan is home to the
    Brandenburg" -> "Quill"): copying shows no knowledge, and made-up names get their own copy, which the
    answerable check (same answer for every name) cannot see."""
    content = answer.split()[-1].lower()
    return any(word.lower().startswith(content) for word in _WORD.findall(prompt))


@torch.no_grad()
def first_token_confidence(
    model: nn.Module, tokenizer, prompts: list[str], names: list[str], layer: int, batch_size: int = 64
) -> list[float]:
    """Probability of the most likely next token after each prompt; the prompts' encoding and the
    last-position logits of the losses (``encode_prompts``, ``residual_and_last_logits``)."""
    enc = encode_prompts(tokenizer, prompts, names)
    out: list[float] = []
    for start in range(0, len(enc), batch_size):
        batch = enc.slice(start, min(start + batch_size, len(enc))).to(model_device(model))
        _, logits = residual_and_last_logits(model, batch.input_ids, batch.attention_mask, layer, batch.prompt_last)
        out += torch.softmax(logits.float(), -1).max(-1).values.tolist()
    return out


def describe_names(
    model: nn.Module,
    tokenizer,
    names: list[str],
    file_entities: list[Entity],
    known_references: list[Entity],
    layer: int,
    settings: NameOnlySettings = NameOnlySettings(),
    seed: int = 0,
) -> list[DescribedName]:
    """What the model knows about each bare name (module docstring); ``known_references`` are file
    entities the model knows (their type centroids), ``file_entities`` give the relations to ask."""
    relations = relations_by_type(file_entities, settings.relations_per_type)
    references = [e for e in known_references if e.type in relations]
    types = infer_types(model, tokenizer, names, references, layer)
    asked = [(n, t, tpl) for n, t in zip(names, types) for tpl in relations[t]]
    prompts = [tpl.replace("{e}", n) for n, _, tpl in asked]
    answers = [leading_answer(c) for c in greedy_continuations(model, tokenizer, prompts, settings.max_new_tokens)]
    confidence = first_token_confidence(model, tokenizer, prompts, [n for n, _, _ in asked], layer)
    facts: dict[str, list[Fact]] = {n: [] for n in names}
    for (name, _, tpl), prompt, answer, p in zip(asked, prompts, answers, confidence):
        if answer and p >= settings.min_confidence and not echoes_prompt(answer, prompt):
            facts[name].append(Fact(prompt, answer, tpl, heldout=False, phrasing=TRAIN_PHRASING))
    entities = [Entity(n, t, facts[n]) for n, t in zip(names, types) if facts[n]]
    avoid = {e.name for e in file_entities} | set(names)
    made_up = fictional_entities(entities, settings.made_up_names, seed=seed + 2, avoid=avoid) if entities else []
    checked = {
        e.name: e
        for e in mark_answerable(model, tokenizer, entities, made_up, settings.made_up_names, settings.max_new_tokens)
    }
    out = []
    for name, etype in zip(names, types):
        kept = [f for f in checked[name].facts if not f.answerable] if name in checked else []
        out.append(DescribedName(name, etype, tuple(kept), len(relations[etype])))
    return out


def evaluation_entity(described: DescribedName, file_entity: Entity | None) -> Entity:
    """What evaluation reads for a name-only target: the file's facts (never given to a loss) when the
    file has the name, else the described facts with their held-out phrasings."""
    if file_entity is not None:
        return file_entity
    return with_heldout_phrasings(described.entity())
