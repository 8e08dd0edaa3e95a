"""RMU (Li et al. 2024, "The WMDP Benchmark", arXiv 2403.03218, Representation Misdirection for Unlearning).

Forget: steer layer-l activations on forget text toward a fixed random direction, ||h(x_f) - c u||^2.
Retain: keep layer-l activations on retain text, alpha ||h(x_r) - h_ref(x_r)||^2.
Trained: the MLPs of layers l-2, l-1, l (the paper's recipe). Paper defaults for Zephyr-7B: c = 6.5,
alpha = 1200, lr = 5e-5, l = 7. ``c`` is in units of that model's activation norm, so we express it
relative to the mean activation norm at l (``steering_scale``); documented in docs/baselines.md.
"""

from __future__ import annotations

import random

import torch
from pydantic import Field

from sae_unlearn.methods.base import GradientUnlearner, UnlearnTask, sample_rows, trainable_block_params
from sae_unlearn.methods.lm_losses import encode_fact_answers
from sae_unlearn.methods.options import FloorStopOptions, LRSchedule
from sae_unlearn.methods.registry import register_method
from sae_unlearn.models.capture import residual_at_layer
from sae_unlearn.models.layers import decoder_layers, model_device


class RMUConfig(FloorStopOptions):
    lr: float = Field(1e-3, gt=0)
    steering_scale: float = 2.0  # c = steering_scale * mean ||h|| at the layer
    alpha: float = 100.0  # paper: 1200 at Zephyr's scale; tuned on our step budget (docs/baselines.md)
    # open-unlearning's WMDP recipe (configs/experiment/unlearn/wmdp/default.yaml): a constant rate, no warmup,
    # no weight decay; the HF Trainer's clipping at norm 1
    lr_schedule: LRSchedule = "constant"
    warmup: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)


@register_method
class RMUUnlearner(GradientUnlearner):
    name = "rmu"
    config_cls = RMUConfig

    def trained_layers(self, task: UnlearnTask) -> list[int]:
        return [i for i in range(task.layer - 2, task.layer + 1) if i >= 0]

    def trainable_params(self, task: UnlearnTask) -> list[torch.nn.Parameter]:
        """Only the MLP sub-module of each trained block (the paper's recipe)."""
        trainable_block_params(task.model, [])
        params = []
        for i in self.trained_layers(task):
            block = decoder_layers(task.model)[i]
            for p in getattr(block, "mlp", block).parameters():
                p.requires_grad_(True)
                params.append(p)
        return params

    def prepare(self, task: UnlearnTask) -> None:
        device = model_device(task.model)
        self.forget = encode_fact_answers(task.tokenizer, task.split.forget, device)
        self.retain = encode_fact_answers(task.tokenizer, task.split.retain, device)
        gen = torch.Generator().manual_seed(task.seed)
        with torch.no_grad():
            h_f = residual_at_layer(task.model, self.forget.input_ids, self.forget.attention_mask, task.layer)
            self.retain_ref = residual_at_layer(
                task.model, self.retain.input_ids, self.retain.attention_mask, task.layer
            )
        norm = h_f[self.forget.attention_mask.bool()].norm(dim=-1).mean()
        # the paper samples u uniformly in [0, 1), then normalises; drawn on the CPU so every device draws the same u
        u = torch.rand(h_f.shape[-1], generator=gen).to(device)
        self.control = self.cfg.steering_scale * norm * u / u.norm()

    def loss(self, task: UnlearnTask, step: int, rng: random.Random) -> dict[str, torch.Tensor]:
        f = self.forget.rows(torch.tensor(sample_rows(len(self.forget), self.cfg.batch_size, rng)))
        idx = torch.tensor(sample_rows(len(self.retain), self.cfg.batch_size, rng))
        r = self.retain.rows(idx)
        h_f = residual_at_layer(task.model, f.input_ids, f.attention_mask, task.layer)
        h_r = residual_at_layer(task.model, r.input_ids, r.attention_mask, task.layer)
        fm, rm = f.attention_mask.bool(), r.attention_mask.bool()
        forget = (h_f[fm] - self.control).pow(2).mean()
        retain = (h_r[rm] - self.retain_ref[idx][rm]).pow(2).mean()
        return {"forget": forget, "retain": self.cfg.alpha * retain}
