"""Train an SAE on captured activations with sae-lens' own trainer.

sae-lens' ``SAETrainer`` takes any iterator of activation batches; we feed it an in-memory,
shuffled tensor (the synthetic world and entity prompts fit in RAM), rather than its
``ActivationsStore``, which is tied to a TransformerLens model and a hub dataset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Literal

import torch
from sae_lens import SAE, LoggingConfig, StandardTrainingSAE, StandardTrainingSAEConfig
from sae_lens.config import SAETrainerConfig
from sae_lens.training.sae_trainer import SAETrainer

from sae_unlearn.io_utils import atomic_save_dir


def _shuffled_batches(acts: torch.Tensor, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(acts.shape[0], generator=gen)
        for start in range(0, acts.shape[0] - batch_size + 1, batch_size):
            yield acts[perm[start : start + batch_size]]


def train_sae(
    acts: torch.Tensor,
    hook_name: str,
    model_name: str,
    expansion: int = 4,
    l1_coefficient: float = 3.0,
    total_samples: int = 400_000,
    batch_size: int = 512,
    lr: float = 1e-3,
    seed: int = 0,
    device: str = "cpu",
    b_dec_init: Literal["zeros", "mean"] = "zeros",
) -> SAE:
    """A ReLU SAE (sae-lens 'standard'), activation norm folded into the weights at the end.

    ``b_dec_init="mean"`` starts the decoder bias at the data's mean, as Anthropic's SAEs did ("Towards
    Monosemanticity"; sae-lens 6 no longer offers it, so it is set here). Where the mean is most of every
    residual (Gemma-3-270M: 95 % of the squared norm), a zero start leaves a few hundred steps too few to learn
    it, and the latents fire densely to make up the offset (docs/results.md, session 37)."""
    torch.manual_seed(seed)
    acts = acts.to(device)
    d_in = acts.shape[1]
    cfg = StandardTrainingSAEConfig(
        d_in=d_in,
        d_sae=d_in * expansion,
        l1_coefficient=l1_coefficient,
        l1_warm_up_steps=max(1, total_samples // batch_size // 10),
        normalize_activations="expected_average_only_in",
        apply_b_dec_to_input=True,
        device=device,
    )
    cfg.metadata.hook_name = hook_name
    cfg.metadata.model_name = model_name
    sae = StandardTrainingSAE(cfg)
    if b_dec_init == "mean":
        with torch.no_grad():  # in the trainer's scaled space: mean norm sqrt(d_in), as its estimate sets it
            sae.b_dec.copy_(acts.mean(0) * d_in**0.5 / acts.norm(dim=-1).mean())
    trainer_cfg = SAETrainerConfig(
        total_training_samples=total_samples,
        train_batch_size_samples=batch_size,
        lr=lr,
        lr_end=lr / 10,
        lr_scheduler_name="cosineannealing",
        lr_warm_up_steps=20,
        device=device,
        logger=LoggingConfig(log_to_wandb=False),
        n_batches_for_norm_estimate=20,
        dead_feature_window=200,
        feature_sampling_window=200,
    )
    trainer = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=_shuffled_batches(acts, batch_size, seed))
    return trainer.fit()


def save_sae(sae: SAE, target: Path) -> Path:
    """sae-lens' own inference format (cfg.json + sae_weights.safetensors), written atomically."""
    if hasattr(sae, "save_inference_model"):
        return atomic_save_dir(target, lambda tmp: sae.save_inference_model(tmp))
    return atomic_save_dir(target, lambda tmp: sae.save_model(tmp))
