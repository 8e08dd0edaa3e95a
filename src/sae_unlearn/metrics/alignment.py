"""Internal alignment: do SAE latents still tell the targets from unknown entities?"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from sae_unlearn.entities.types import Entity
from sae_unlearn.models.capture import capture_entity_activations
from sae_unlearn.models.prompts import encode_facts


def entity_activations(
    model: nn.Module, tokenizer, entities: list[Entity], layer: int
) -> tuple[torch.Tensor, np.ndarray]:
    """Residual at the entity's last token for every fact prompt (all phrasings), plus each row's entity index."""
    acts = capture_entity_activations(model, encode_facts(tokenizer, entities, heldout=None), layer)
    owner = np.array([i for i, e in enumerate(entities) for _ in e.facts])
    return acts, owner


def sae_codes(sae, acts: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return sae.encode(acts.to(next(sae.parameters()).device)).float().cpu()


def entity_codes(
    model: nn.Module, tokenizer, sae, entities: list[Entity], layer: int
) -> tuple[torch.Tensor, np.ndarray]:
    """SAE codes at the entity's last token for every fact prompt, plus each row's entity index."""
    acts, owner = entity_activations(model, tokenizer, entities, layer)
    return sae_codes(sae, acts), owner


@dataclass
class KnownUnknownProbe:
    """A logistic-regression probe on SAE latents (or, standardised, on raw residuals), fitted on the original model."""

    clf: LogisticRegression | Pipeline

    @classmethod
    def fit(
        cls, z_known: torch.Tensor, z_unknown: torch.Tensor, seed: int = 0, standardize: bool = False
    ) -> "KnownUnknownProbe":
        """``standardize``: scale features first (raw residuals; their scales differ by orders of magnitude)."""
        x = torch.cat([z_known, z_unknown]).float().numpy()
        y = np.r_[np.ones(len(z_known)), np.zeros(len(z_unknown))]
        clf = LogisticRegression(C=0.1, max_iter=2000, class_weight="balanced", random_state=seed)
        model = make_pipeline(StandardScaler(), clf) if standardize else clf
        model.fit(x, y)
        return cls(model)

    def p_known(self, z: torch.Tensor) -> np.ndarray:
        return self.clf.predict_proba(z.float().numpy())[:, 1]

    def share_unknown(self, z: torch.Tensor, owner: np.ndarray) -> float:
        """An entity is called unknown when its mean P(known) over its prompts is below 0.5."""
        p = self.p_known(z)
        per_entity = np.array([p[owner == i].mean() for i in np.unique(owner)])
        return float((per_entity < 0.5).mean())

    def auc(self, z_target: torch.Tensor, z_unknown: torch.Tensor) -> float:
        """AUC of P(known) separating targets from unknown entities: 0.5 = indistinguishable."""
        scores = np.r_[self.p_known(z_target), self.p_known(z_unknown)]
        labels = np.r_[np.ones(len(z_target)), np.zeros(len(z_unknown))]
        return float(roc_auc_score(labels, scores))


def centroid_distances(z: torch.Tensor, mu_known: torch.Tensor, mu_unknown: torch.Tensor) -> tuple[float, float]:
    """Mean distance of codes to the known and unknown centroids."""
    return float((z - mu_known).norm(dim=-1).mean()), float((z - mu_unknown).norm(dim=-1).mean())
