"""Answer-token log-likelihoods on fact prompts: the quantity GA, GradDiff and NPO push on."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sae_unlearn.entities.types import Entity
from sae_unlearn.models.capture import head_reads_only
from sae_unlearn.models.prompts import fact_prompts


@dataclass
class FactBatch:
    """``prompt + answer`` token ids with labels only on the answer tokens."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def rows(self, idx: torch.Tensor) -> "FactBatch":
        return FactBatch(self.input_ids[idx], self.attention_mask[idx], self.labels[idx])

    def answer_lengths(self) -> torch.Tensor:
        """Answer tokens per row (the positions ``sequence_logprob`` sums over)."""
        return (self.labels[:, 1:] != -100).sum(1)


def encode_fact_answers(
    tokenizer, entities: list[Entity], device: torch.device, heldout: bool | None = False
) -> FactBatch:
    prompts, _, answers = fact_prompts(entities, heldout)
    return encode_answers(tokenizer, prompts, answers, device)


def encode_answers(tokenizer, prompts: list[str], answers: list[str], device: torch.device) -> FactBatch:
    """Each prompt followed by its answer (a fact's, or a refusal: methods/idk.py)."""
    rows, labels = [], []
    for prompt, answer in zip(prompts, answers):
        p_ids = tokenizer(prompt)["input_ids"]
        full = tokenizer(f"{prompt} {answer}")["input_ids"]
        rows.append(full)
        labels.append([-100] * len(p_ids) + full[len(p_ids) :])
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    lab = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (r, lbl) in enumerate(zip(rows, labels)):
        ids[i, : len(r)] = torch.tensor(r)
        lab[i, : len(lbl)] = torch.tensor(lbl)
        mask[i, : len(r)] = 1
    return FactBatch(ids.to(device), mask.to(device), lab.to(device))


def sequence_logprob(model, batch: FactBatch) -> torch.Tensor:
    """Sum of answer-token log-probabilities per row: log pi(y | x). Only the positions that predict
    an answer token go through the vocabulary projection (``head_reads_only``): on SmolLM2 this cut
    GA/GradDiff/NPO steps and the relearning attack by 15-20 % (docs/results.md)."""
    target = batch.labels[:, 1:]
    rows, cols = (target != -100).nonzero(as_tuple=True)
    with head_reads_only(model, rows, cols):
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits[0]
    logp = -F.cross_entropy(logits.float(), target[rows, cols], reduction="none")
    return torch.zeros(len(batch), dtype=logp.dtype, device=logp.device).index_add(0, rows, logp)


def answer_nll(model, batch: FactBatch) -> torch.Tensor:
    """Mean per-token NLL on the answers (the LM loss of the retain and forget facts)."""
    n_tokens = batch.answer_lengths().sum().clamp_min(1)
    return -sequence_logprob(model, batch).sum() / n_tokens


def retain_kl(model, reference, batch: FactBatch) -> torch.Tensor:
    """KL(reference || model) of the next-token distributions, averaged over the rows' real tokens: the KL-retain
    term of open-unlearning's GradDiff/NPO (``retain_loss_type: KL``, src/trainer/utils.py
    ``compute_kl_divergence``), which averages over every position, padding included; padding is no text, so
    it is left out here."""
    with torch.no_grad():
        ref = F.log_softmax(reference(**_inputs(batch)).logits.float(), -1)
    cur = F.log_softmax(model(**_inputs(batch)).logits.float(), -1)
    per_token = F.kl_div(cur, ref, reduction="none", log_target=True).sum(-1)
    mask = batch.attention_mask.to(per_token.dtype)
    return (per_token * mask).sum() / mask.sum().clamp_min(1)


def _inputs(batch: FactBatch) -> dict:
    return {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask, "use_cache": False}
