"""Collapse checks: perplexity on held-out text, and degenerate (repetitive) generations."""

from __future__ import annotations

import math

import torch
from torch import nn

from sae_unlearn.models.generation import greedy_continuations, padding_on
from sae_unlearn.models.layers import model_device


@torch.no_grad()
def perplexity(model: nn.Module, tokenizer, texts: list[str], batch_size: int = 64) -> float:
    device = model_device(model)
    total_nll, total_tokens = 0.0, 0
    for start in range(0, len(texts), batch_size):
        with padding_on(tokenizer, "right"):  # every text's tokens at the positions they have alone
            enc = tokenizer(texts[start : start + batch_size], return_tensors="pt", padding=True).to(device)
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        logits = model(**enc, use_cache=False).logits[:, :-1].float()
        target = labels[:, 1:]
        nll = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="sum"
        )
        total_nll += float(nll)
        total_tokens += int((target != -100).sum())
    return math.exp(total_nll / max(1, total_tokens))


def is_degenerate(text: str) -> bool:
    """Gibberish by repetition: a word three times in a row, or under half the words distinct."""
    words = text.split()
    if len(words) < 3:
        return False
    if any(words[i] == words[i + 1] == words[i + 2] for i in range(len(words) - 2)):
        return True
    return len(set(words)) / len(words) < 0.5


def degenerate_rate(
    model: nn.Module, tokenizer, prompts: list[str], max_new_tokens: int = 12
) -> tuple[float, list[str]]:
    conts = greedy_continuations(model, tokenizer, prompts, max_new_tokens)
    return sum(map(is_degenerate, conts)) / max(1, len(conts)), conts
