"""Tokenise prompts and locate the entity's last token in each (where activations are read)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sae_unlearn.entities.types import Entity
from sae_unlearn.errors import UserInputError


@dataclass
class EncodedPrompts:
    """Right-padded token ids plus, per row, the entity's last token and the prompt's last token."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    entity_last: torch.Tensor  # index of the entity's last token in each row
    prompt_last: torch.Tensor  # index of the last real token in each row

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def slice(self, start: int, stop: int) -> "EncodedPrompts":
        return self.take(torch.arange(start, stop))

    def take(self, rows: torch.Tensor) -> "EncodedPrompts":
        """The given rows, in that order, trimmed to their longest prompt."""
        rows = rows.to(self.input_ids.device)
        width = int(self.prompt_last[rows].max()) + 1
        return EncodedPrompts(
            self.input_ids[rows, :width],
            self.attention_mask[rows, :width],
            self.entity_last[rows],
            self.prompt_last[rows],
        )

    def length_batches(self, batch_size: int) -> list[torch.Tensor]:
        """Every row index, shortest prompts first, in batches of ``batch_size``: each batch pads little."""
        order = torch.argsort(self.prompt_last.cpu(), stable=True)
        return list(order.split(batch_size))

    def length_groups(self, rows: torch.Tensor) -> list[torch.Tensor]:
        """``rows`` as one group, or as two (shorter, longer) where that pads at least a sixth fewer tokens.
        Why: a step whose rows mix bare fact prompts with the same facts after a lead-in (twice as long)
        pays for the longest row in every row; compute on a CPU grows with the padded token count."""
        lengths = self.prompt_last[rows.to(self.prompt_last.device)].cpu() + 1
        order = torch.argsort(lengths, stable=True)
        sorted_lengths = lengths[order]
        n, longest = len(rows), int(sorted_lengths[-1]) if len(rows) else 0
        best_cut, best_cost = 0, n * longest
        for cut in range(1, n):
            cost = cut * int(sorted_lengths[cut - 1]) + (n - cut) * longest
            if cost < best_cost:
                best_cut, best_cost = cut, cost
        if best_cut == 0 or best_cost > n * longest * 5 / 6:
            return [rows]
        ordered = rows[order.to(rows.device)]
        return [ordered[:best_cut], ordered[best_cut:]]

    def to(self, device: torch.device) -> "EncodedPrompts":
        return EncodedPrompts(
            *(t.to(device) for t in (self.input_ids, self.attention_mask, self.entity_last, self.prompt_last))
        )

    def entity_prefixes(self) -> tuple["EncodedPrompts", torch.Tensor]:
        """Each distinct run of tokens up to the entity's last one, cut there, plus the index of every
        row's prefix. Why: a causal model's activation at a token depends only on the tokens up to it,
        so prompts that open with the same words (an entity's facts, phrased "Name ...") share it;
        evaluation reads four phrasings per fact, and running each prefix once, short, halved the
        cost of capture on the SmolLM2 demo (docs/reliability_and_scale.md) with the same numbers.
        Prefixes come shortest first, so each batch pads little (the demo's known entities: 27 -> 15 s)."""
        index: dict[tuple[int, ...], int] = {}
        first_seen = []
        for ids, last in zip(self.input_ids.tolist(), self.entity_last.tolist()):
            first_seen.append(index.setdefault(tuple(ids[: last + 1]), len(index)))
        by_first_seen = list(index)
        prefixes = sorted(by_first_seen, key=len)
        rank = {prefix: i for i, prefix in enumerate(prefixes)}
        owner = [rank[by_first_seen[i]] for i in first_seen]
        width = max((len(p) for p in prefixes), default=0)
        input_ids = torch.zeros((len(prefixes), width), dtype=self.input_ids.dtype)
        mask = torch.zeros((len(prefixes), width), dtype=self.attention_mask.dtype)
        for i, p in enumerate(prefixes):
            input_ids[i, : len(p)] = torch.tensor(p)
            mask[i, : len(p)] = 1
        last = torch.tensor([len(p) - 1 for p in prefixes], dtype=self.entity_last.dtype)
        return EncodedPrompts(input_ids, mask, last, last.clone()), torch.tensor(owner, dtype=torch.long)

    def after_entity_mask(self) -> torch.Tensor:
        """Positions from the entity's last token to the prompt's end: the only positions whose
        residual stream can carry the entity's identity (earlier ones, causally, cannot)."""
        pos = torch.arange(self.input_ids.shape[1], device=self.input_ids.device)[None, :]
        return (pos >= self.entity_last[:, None]) & (pos <= self.prompt_last[:, None])


def _name_positions(text: str, entity: str, offsets: list[tuple[int, int]]) -> list[int]:
    """The token positions that overlap the entity's (last) occurrence in ``text``, found by character offsets so
    that any tokenizer agrees; refused when the name is missing or maps to no token."""
    start = text.rfind(entity)
    if start < 0:
        raise UserInputError(
            f"Entity name {entity!r} does not occur in its prompt {text!r}; "
            "every prompt must contain the entity name verbatim."
        )
    end = start + len(entity)
    positions = [i for i, (a, b) in enumerate(offsets) if a < end and b > start and b > a]
    if not positions:
        raise UserInputError(f"Entity {entity!r} maps to no token in {text!r}.")
    return positions


def name_tokens(tokenizer, prompts: list[str], entities: list[str]) -> tuple[set[int], set[int]]:
    """(token ids inside the entities' names, token ids elsewhere in the prompts, special tokens included), as
    the prompts tokenise them: a name's tokens differ with what precedes it (a leading space in BPE)."""
    enc = tokenizer(prompts, return_offsets_mapping=True, add_special_tokens=True)
    inside: set[int] = set()
    outside: set[int] = set()
    for text, entity, ids, offsets in zip(prompts, entities, enc["input_ids"], enc["offset_mapping"]):
        positions = set(_name_positions(text, entity, offsets))
        for i, token in enumerate(ids):
            (inside if i in positions else outside).add(token)
    return inside, outside


def encode_prompts(tokenizer, prompts: list[str], entities: list[str]) -> EncodedPrompts:
    """Tokenise with offsets so the entity's last token is found whatever the tokenizer."""
    if len(prompts) != len(entities):
        raise ValueError("one entity per prompt")
    enc = tokenizer(prompts, return_offsets_mapping=True, add_special_tokens=True)
    rows, ent_last, prompt_last = [], [], []
    for text, entity, ids, offsets in zip(prompts, entities, enc["input_ids"], enc["offset_mapping"]):
        last = max(_name_positions(text, entity, offsets))
        rows.append(ids)
        ent_last.append(last)
        prompt_last.append(len(ids) - 1)
    width = max(len(r) for r in rows)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        input_ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return EncodedPrompts(input_ids, mask, torch.tensor(ent_last), torch.tensor(prompt_last))


def fact_prompts(entities: list[Entity], heldout: bool | None = False) -> tuple[list[str], list[str], list[str]]:
    """(prompts, entity names, answers) of the entities' facts; ``heldout=None`` takes all."""
    rows = [(f.prompt, e.name, f.answer) for e in entities for f in e.facts if heldout is None or f.heldout == heldout]
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def encode_facts(tokenizer, entities: list[Entity], heldout: bool | None = False) -> EncodedPrompts:
    prompts, names, _ = fact_prompts(entities, heldout)
    return encode_prompts(tokenizer, prompts, names)
