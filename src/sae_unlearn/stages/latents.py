"""Stage 4, latents: separation scores of every SAE latent (known vs unknown), the known/unknown probes,
and the original model's centroids that every distance metric refers to.
"""

from __future__ import annotations

import torch

from sae_unlearn.metrics.alignment import KnownUnknownProbe, entity_activations, sae_codes
from sae_unlearn.sae.latents import separation_scores
from sae_unlearn.sae.quality import sae_quality, warn_if_poor
from sae_unlearn.state import LatentFrame, Workspace


def select_latents(ws: Workspace) -> Workspace:
    assert ws.split is not None
    known = ws.split.forget + ws.split.other_known
    acts_known, owner = entity_activations(ws.model, ws.tokenizer, known, ws.layer)
    acts_unknown, _ = entity_activations(ws.model, ws.tokenizer, ws.split.unknown, ws.layer)
    z_known, z_unknown = sae_codes(ws.sae, acts_known), sae_codes(ws.sae, acts_unknown)
    quality = sae_quality(ws.sae, torch.cat([acts_known, acts_unknown]), torch.cat([z_known, z_unknown]))
    warn_if_poor(quality, "the entities' last tokens")
    return ws.with_(
        latents=LatentFrame(
            scores=separation_scores(z_known, z_unknown),
            probe=KnownUnknownProbe.fit(z_known, z_unknown, seed=ws.cfg.seed),
            residual_probe=KnownUnknownProbe.fit(acts_known, acts_unknown, seed=ws.cfg.seed, standardize=True),
            # centroids of the original model, the fixed reference of every "distance to known/unknown" metric
            mu_known=z_known[torch.from_numpy(owner >= len(ws.split.forget))].mean(0),
            mu_unknown=z_unknown.mean(0),
            sae_quality=quality,
        )
    )
