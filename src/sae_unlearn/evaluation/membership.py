"""Min-K% probability (Shi et al., ICLR 2024), the field's usual membership-inference score, asked the unlearning
question: can it still tell the targets' facts from the very same sentences about never-seen names?

A sentence's score is the mean log-probability of its k % least likely tokens. Only the tokens after the name are
scored (the fact given the name): the name's own tokens would tell a famous name from a made-up one whatever the
model knows of it. The comparison swaps unknown names into the targets' own sentences, as the recall floor does.
AUC 0.5 means the scores cannot tell the two apart; a model that knows the facts gives well above 0.5.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from sae_unlearn.metrics.recall import scored_facts
from sae_unlearn.metrics.registry import Metric, register
from sae_unlearn.models.layers import model_device
from sae_unlearn.models.prompts import encode_prompts
from sae_unlearn.state import Workspace

MIN_K = 0.2  # the paper's default share of tokens
SUBSTITUTES_PER_TARGET = 2


@torch.no_grad()
def min_k_scores(
    model: nn.Module, tokenizer, texts: list[str], names: list[str], k: float = MIN_K, batch_size: int = 32
) -> np.ndarray:
    """Per text, the mean log-probability of the ``k`` share of least likely tokens after the name."""
    device = model_device(model)
    scores = []
    for start in range(0, len(texts), batch_size):
        enc = encode_prompts(tokenizer, texts[start : start + batch_size], names[start : start + batch_size])
        ids, mask = enc.input_ids.to(device), enc.attention_mask.to(device)
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1].float()
        token_logp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)  # [j]: token j+1
        for row, (first, last) in enumerate(zip(enc.entity_last.tolist(), enc.prompt_last.tolist())):
            logp = token_logp[row, first:last]  # the tokens after the name, each given everything before it
            n = max(1, math.ceil(k * len(logp)))
            scores.append(float(logp.sort().values[:n].mean()) if len(logp) else 0.0)
    return np.array(scores)


def forget_membership(ws: Workspace, model: nn.Module, original: bool) -> dict[str, float]:
    split = ws.split
    assert split is not None
    rows: list[tuple[str, str, int]] = []  # (sentence, name in it, 1: a target's fact / 0: an unknown name's)
    for target in split.forget:
        subs = [e for e in ws.unknown_eval if e.type == target.type][:SUBSTITUTES_PER_TARGET]
        for fact in scored_facts(target, ws.eval_heldout):
            sentence = f"{fact.prompt} {fact.answer}"
            rows.append((sentence, target.name, 1))
            rows += [(sentence.replace(target.name, sub.name), sub.name, 0) for sub in subs]
    labels = [label for _, _, label in rows]
    if len(set(labels)) < 2:
        return {"forget_mink_auc": float("nan")}
    scores = min_k_scores(model, ws.tokenizer, [r[0] for r in rows], [r[1] for r in rows])
    return {"forget_mink_auc": float(roc_auc_score(labels, scores))}


register(
    Metric(
        "forget_mink_auc",
        "Min-K% membership AUC, targets' facts vs the same with unknown names (0.5 = indistinguishable)",
        better=0.5,
        section="attacks",
        compare=True,
        compute=forget_membership,
    )
)
