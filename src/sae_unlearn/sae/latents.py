"""Ferrando et al.'s separation scores: which latents fire for known vs unknown entities."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class LatentScores:
    """Per latent: the share of known / unknown entities on which it fires (> 0)."""

    f_known: torch.Tensor
    f_unknown: torch.Tensor

    @property
    def known_score(self) -> torch.Tensor:
        return self.f_known - self.f_unknown

    @property
    def unknown_score(self) -> torch.Tensor:
        return self.f_unknown - self.f_known

    def top_known(self, k: int) -> list[int]:
        return torch.topk(self.known_score, k).indices.tolist()

    def top_unknown(self, k: int) -> list[int]:
        return torch.topk(self.unknown_score, k).indices.tolist()

    def table(self, k: int) -> list[dict]:
        rows = []
        for kind, idx in (("known", self.top_known(k)), ("unknown", self.top_unknown(k))):
            for rank, j in enumerate(idx):
                rows.append(
                    {
                        "kind": kind,
                        "rank": rank + 1,
                        "latent": j,
                        "f_known": round(float(self.f_known[j]), 4),
                        "f_unknown": round(float(self.f_unknown[j]), 4),
                        "score": round(float(self.known_score[j] if kind == "known" else self.unknown_score[j]), 4),
                    }
                )
        return rows


def separation_scores(z_known: torch.Tensor, z_unknown: torch.Tensor) -> LatentScores:
    """``z_*``: [n, d_sae] SAE codes at the entity's last token, one row per prompt."""
    return LatentScores(f_known=(z_known > 0).float().mean(0), f_unknown=(z_unknown > 0).float().mean(0))
