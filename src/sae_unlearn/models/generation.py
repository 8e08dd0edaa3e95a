"""Greedy and sampled decoding, batched by prompt length, with a per-model-state reuse store.

Metrics, attacks, probing and the SAE corpus all decode; this is the one place that does it.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from sae_unlearn.models.layers import CausalLM, model_device


@contextmanager
def padding_on(tokenizer, side: str) -> Iterator[None]:
    """The tokenizer pads on ``side`` inside the block, and as before after it. Why: a tokenizer's default side
    differs between models (Gemma's pads left, SmolLM2's right) and between the copies a run and a later `attack`
    load, and a left-padded batch shifts every real token's position: Gemma-3-270M's perplexity on 128 cloze
    sentences of the bundled file read 44.5 padded right and 67.5 padded left (2026-12-06), and `attack` on a
    saved Gemma run reported 59.0 -> 142.5 where the run itself had 40.1 -> 40.2."""
    old = tokenizer.padding_side
    tokenizer.padding_side = side
    try:
        yield
    finally:
        tokenizer.padding_side = old


@torch.no_grad()
def continuations(
    model: CausalLM,
    tokenizer,
    prompts: list[str],
    max_new_tokens: int,
    batch_size: int = 64,
    by_length: bool = True,
    **generate_kwargs,
) -> list[str]:
    """Batched decoding with left padding; returns only the new text, in the order of ``prompts``.
    ``generate_kwargs`` pick the decoding. Batches hold prompts of similar length: padding is compute
    spent for nothing, and on CPU the prompt pass dominates short decodes. ``by_length=False`` keeps the
    given order in batches (sampling: the draws then do not depend on the other prompts' lengths)."""
    device = model_device(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    lengths = [len(ids) for ids in tokenizer(prompts)["input_ids"]] if prompts and by_length else []
    order = sorted(range(len(prompts)), key=lambda i: lengths[i]) if by_length else list(range(len(prompts)))
    outs: list[str] = [""] * len(prompts)
    with padding_on(tokenizer, "left"):
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            enc = tokenizer([prompts[i] for i in rows], return_tensors="pt", padding=True).to(device)
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=pad_id, **generate_kwargs)
            new = gen[:, enc["input_ids"].shape[1] :]
            for i, text in zip(rows, tokenizer.batch_decode(new, skip_special_tokens=True)):
                outs[i] = text
    return outs


# (model, {(prompt, max_new_tokens): continuation}) while ``reuse_greedy_continuations`` holds for it
_reused: list[tuple[nn.Module, dict[tuple[str, int], str]]] = []


@contextmanager
def reuse_greedy_continuations(model: nn.Module) -> Iterator[None]:
    """Inside this block ``model``'s weights do not change, so a prompt decoded once is not decoded
    again. Why: one model state's metrics ask the same prompts several times (recall, recall without
    the answerable facts, recall per phrasing, the paraphrase attack, probing and the "before"
    numbers), and greedy decoding is most of an evaluation's time on CPU. Nested blocks for the same
    model share one store; the store ends with the outermost block."""
    if any(m is model for m, _ in _reused):
        yield
        return
    _reused.append((model, {}))
    try:
        yield
    finally:
        _reused.pop()


def greedy_continuations(
    model: nn.Module, tokenizer, prompts: list[str], max_new_tokens: int = 4, batch_size: int = 64
) -> list[str]:
    store = next((s for m, s in _reused if m is model), None)
    if store is None:
        return _greedy(model, tokenizer, prompts, max_new_tokens, batch_size)
    missing = list(dict.fromkeys(p for p in prompts if (p, max_new_tokens) not in store))
    for prompt, text in zip(missing, _greedy(model, tokenizer, missing, max_new_tokens, batch_size)):
        store[(prompt, max_new_tokens)] = text
    return [store[(p, max_new_tokens)] for p in prompts]


def _greedy(model: nn.Module, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int) -> list[str]:
    return continuations(
        model,
        tokenizer,
        prompts,
        max_new_tokens,
        batch_size,
        do_sample=False,
        num_beams=1,
        temperature=None,
        top_p=None,
        top_k=None,
    )
