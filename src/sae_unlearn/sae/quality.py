"""How well the SAE reads the residuals the method works on: sparsity (L0), explained variance, live latents.

Why: every latent the method selects, and every SAE-space distance it moves, is only as meaningful as the SAE.
A poor one fails silently: on Gemma-3-270M an SAE trained as SmolLM2's fired 758 of 2,560 latents per token and
explained 0.32 of the variance, and SAE clamping found no target-specific latent (docs/results.md, session 37).
sae-lens computes these statistics only inside its training loop (for wandb), so they are measured here.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

# a code this dense, or a reconstruction this poor, is no longer a sparse dictionary of the residual
MAX_L0_SHARE = 0.25
MIN_EXPLAINED_VARIANCE = 0.5


@torch.no_grad()
def sae_quality(sae, acts: torch.Tensor, codes: torch.Tensor | None = None) -> dict[str, float]:
    """Statistics of the SAE on ``acts`` [rows, d_in]: mean active latents per row (``l0``, and as a share of the
    latents), the variance explained around the rows' mean, and the share of latents active on any row.
    ``codes``: ``acts``' SAE codes where the caller has them already (not encoded again)."""
    param = next(sae.parameters())
    x = acts.to(param.device, param.dtype)
    z = sae.encode(x) if codes is None else codes.to(param.device, param.dtype)
    recon = sae.decode(z)
    fires = z > 0
    l0 = float(fires.sum(-1).float().mean())
    residual = (x - recon).pow(2).sum()
    spread = (x - x.mean(0)).pow(2).sum().clamp_min(torch.finfo(torch.float32).tiny)
    return {
        "rows": len(x),
        "l0": l0,
        "l0_share": l0 / z.shape[-1],
        "explained_variance": float(1 - residual / spread),
        "alive_share": float(fires.any(0).float().mean()),
    }


def warn_if_poor(quality: dict[str, float], where: str) -> bool:
    """Log a warning that names the fixes when the SAE is dense or explains little; True when it did."""
    if quality["l0_share"] <= MAX_L0_SHARE and quality["explained_variance"] >= MIN_EXPLAINED_VARIANCE:
        return False
    log.warning(
        "The SAE reads %s poorly: %.0f active latents per token (%.0f %% of them), explained variance %.2f "
        "(a usable SAE: under %.0f %% and over %.1f). Its latents are a weak reading of 'known' and 'unknown'. "
        "The first token (a BOS, or the document-start token added when the tokenizer has none) is an attention "
        "sink in most LMs, with a residual 10-100x the others', and a large mean is common (Gemma): to train the "
        "SAE on the other tokens from the mean, set sae.exclude_special_tokens: true and sae.b_dec_init: mean "
        "(Gemma's config does); a larger sae.l1_coefficient makes the code sparser, a larger sae.total_samples "
        "trains it longer (docs/real_models.md).",
        where,
        quality["l0"],
        100 * quality["l0_share"],
        quality["explained_variance"],
        100 * MAX_L0_SHARE,
        MIN_EXPLAINED_VARIANCE,
    )
    return True
