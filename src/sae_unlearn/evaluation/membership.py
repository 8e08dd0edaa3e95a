"""Membership inference, the scores RWKU and MUSE report, asked the unlearning question: can they still tell the
targets' facts from the very same sentences about never-seen names?

- LOSS: the mean log-probability of the tokens (Yeom et al. 2018).
- Zlib: that log-probability over the text's zlib-compressed length (Carlini et al. 2021): a sentence that is
  merely easy to predict is not taken for a seen one.
- Min-K%: the mean log-probability of the k % least likely tokens (Shi et al., ICLR 2024).
- Min-K%++: the same on each token's log-probability standardised by the mean and spread of log-probabilities
  under the model's own next-token distribution at that position (Zhang et al., 2024, arXiv 2404.02936).

Only the tokens after the name are scored (the fact given the name): the name's own tokens would tell a famous name
from a made-up one whatever the model knows of it; Zlib compresses that same scored text. The comparison swaps
unknown names into the targets' own sentences, as the recall floor does. AUC 0.5 means a score cannot tell the two
apart; a model that knows the facts gives well above 0.5. Written here, not taken from a library: the maintained
implementations (MUSE's, RWKU's) are research scripts, not packages, and none scores the tokens after a name.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from sae_unlearn.context import EvaluationContext
from sae_unlearn.metrics.recall import scored_facts
from sae_unlearn.metrics.registry import Metric, register, register_attack
from sae_unlearn.models.layers import model_device
from sae_unlearn.models.prompts import encode_prompts

MIN_K = 0.2  # the papers' default share of tokens
SUBSTITUTES_PER_TARGET = 2
# each score's metric key and name
SCORES = {
    "forget_loss_auc": "LOSS",
    "forget_zlib_auc": "Zlib",
    "forget_mink_auc": "Min-K%",
    "forget_minkpp_auc": "Min-K%++",
}


def _lowest_mean(values: torch.Tensor, k: float) -> float:
    n = max(1, math.ceil(k * len(values)))
    return float(values.sort().values[:n].mean()) if len(values) else 0.0


@torch.no_grad()
def membership_scores(
    model: nn.Module, tokenizer, texts: list[str], names: list[str], k: float = MIN_K, batch_size: int = 16
) -> dict[str, np.ndarray]:
    """Per text, each of ``SCORES`` on the tokens after the name (higher: more like a text the model has seen)."""
    device = model_device(model)
    scores: dict[str, list[float]] = {key: [] for key in SCORES}
    for start in range(0, len(texts), batch_size):
        enc = encode_prompts(tokenizer, texts[start : start + batch_size], names[start : start + batch_size])
        ids, mask = enc.input_ids.to(device), enc.attention_mask.to(device)
        log_probs = torch.log_softmax(
            model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1].float(), -1
        )
        token_logp = log_probs.gather(-1, ids[:, 1:, None]).squeeze(-1)  # [j]: token j+1 given tokens 0..j
        probs = log_probs.exp()
        mean = (probs * log_probs).sum(-1)  # E_z[log p(z)] under the model's next-token distribution
        spread = ((probs * log_probs.pow(2)).sum(-1) - mean.pow(2)).clamp_min(1e-12).sqrt()
        for row, (first, last) in enumerate(zip(enc.entity_last.tolist(), enc.prompt_last.tolist())):
            logp = token_logp[row, first:last]  # the tokens after the name, each given everything before it
            text = texts[start + row]
            scored_text = text[text.rfind(names[start + row]) + len(names[start + row]) :]
            mean_logp = float(logp.mean()) if len(logp) else 0.0
            scores["forget_loss_auc"].append(mean_logp)
            scores["forget_zlib_auc"].append(mean_logp / max(1, len(zlib.compress(scored_text.encode()))))
            scores["forget_mink_auc"].append(_lowest_mean(logp, k))
            standardised = (logp - mean[row, first:last]) / spread[row, first:last]
            scores["forget_minkpp_auc"].append(_lowest_mean(standardised, k))
    return {name: np.array(values) for name, values in scores.items()}


def forget_membership(ctx: EvaluationContext, model: nn.Module, original: bool) -> dict[str, float]:
    split = ctx.split
    rows: list[tuple[str, str, int]] = []  # (sentence, name in it, 1: a target's fact / 0: an unknown name's)
    for target in split.forget:
        subs = [e for e in ctx.unknown_eval if e.type == target.type][:SUBSTITUTES_PER_TARGET]
        for fact in scored_facts(target, ctx.eval_heldout):
            sentence = f"{fact.prompt} {fact.answer}"
            rows.append((sentence, target.name, 1))
            rows += [(sentence.replace(target.name, sub.name), sub.name, 0) for sub in subs]
    labels = [label for _, _, label in rows]
    if len(set(labels)) < 2:
        return {key: float("nan") for key in SCORES}
    scores = membership_scores(model, ctx.tokenizer, [r[0] for r in rows], [r[1] for r in rows])
    return {key: float(roc_auc_score(labels, values)) for key, values in scores.items()}


register_attack(
    "membership",
    "Do the targets' fact texts still look seen (likelier than the same texts with unknown names)?",
    extended=True,
)
register(
    *(
        Metric(
            key,
            f"{name} membership AUC, targets' facts vs the same with unknown names (0.5 = indistinguishable)",
            better=0.5,
            section="attacks",
            attack="membership",
            compare=key == "forget_mink_auc",  # one membership column in compare.md; every score is in the report
            compute=forget_membership,
        )
        for key, name in SCORES.items()
    )
)
