"""RMU (Li et al. 2024, "The WMDP Benchmark", arXiv 2403.03218, Representation Misdirection for Unlearning).

Forget: steer layer-l activations on forget text toward a fixed random direction, ||h(x_f) - c u||^2.
Retain: keep layer-l activations on retain text, alpha ||h(x_r) - h_ref(x_r)||^2.
Trained: the MLP output projections' weights (``down_proj``) of layers l-2, l-1, l. The reference code for
Zephyr-7B (WMDP's ``rmu/unlearn.py`` at bc5e1ba l. 26, as open-unlearning's ``configs/trainer/RMU.yaml`` cites it
at d3d7cf9): l = 7 of 32 blocks, ``model.layers.(5|6|7).mlp.down_proj.weight``, c = 6.5, alpha = 1200,
lr = 5e-5. Our l is the same relative depth of the model at hand unless set, and ``c`` is relative to the mean
activation norm at l over the forget tokens without the first (a document-start token or an attention sink,
whose norm is 100x the others' in SmolLM2): scaling c by the frozen model's activation norm is what Adaptive RMU
(Dang et al., arXiv 2408.06223) does per sample; we do it once per run. docs/baselines.md.
"""

from __future__ import annotations

import random

import torch
from pydantic import Field

from sae_unlearn.errors import UserInputError
from sae_unlearn.methods.base import GradientUnlearner, UnlearnTask, sample_rows, trainable_mlp_params
from sae_unlearn.methods.lm_losses import encode_fact_answers
from sae_unlearn.methods.options import FloorStopOptions, LRSchedule
from sae_unlearn.methods.registry import register_method
from sae_unlearn.models.capture import residual_at_layer
from sae_unlearn.models.layers import model_device, num_layers

# the reference's steered layer over its model's depth (layer 7 of Zephyr-7B's 32 blocks)
REFERENCE_DEPTH = 7 / 32
# the MLP's output projection across architectures (Llama/Gemma/Mistral, GPT-2, OPT, GPT-NeoX)
_DOWN_PROJECTIONS = ("down_proj", "c_proj", "fc2", "dense_4h_to_h")


def _is_down_projection(module_name: str) -> bool:
    """The one test of "an MLP output projection" for the trained weights and the LoRA targets alike (GPT-2's
    attention has a ``c_proj`` too: only the one under ``.mlp.`` counts)."""
    return ".mlp." in module_name and module_name.rsplit(".", 1)[-1] in _DOWN_PROJECTIONS


class RMUConfig(FloorStopOptions):
    lr: float = Field(1e-3, gt=0)
    layer: int | None = Field(None, ge=0)  # the steered layer; None: the reference's relative depth (7/32)
    # c = steering_scale * mean ||h|| at the layer. 6.5 (the reference's c, here in units of the activation norm):
    # on the synthetic development draw, with the reference's layer and parameters, 2 / 4 / 6.5 left held-out
    # forget recall at 0.944 / 0.433 / 0.156 (floor 0.069) in 400 steps (docs/baselines.md)
    steering_scale: float = Field(6.5, gt=0)
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

    def steered_layer(self, task: UnlearnTask) -> int:
        n = num_layers(task.model)
        layer = self.cfg.layer if self.cfg.layer is not None else round(REFERENCE_DEPTH * n)
        if not 0 <= layer < n:
            raise UserInputError(f"rmu layer {layer} is out of range: this model has {n} layers (0..{n - 1}).")
        return layer

    def trained_layers(self, task: UnlearnTask) -> list[int]:
        layer = self.steered_layer(task)
        return [i for i in range(layer - 2, layer + 1) if i >= 0]

    def trainable_params(self, task: UnlearnTask) -> list[torch.nn.Parameter]:
        """The MLP output projection's weight of each trained block (the reference's choice); the whole MLP where
        an architecture names it otherwise."""
        return trainable_mlp_params(task.model, self.trained_layers(task), "rmu", pick=_is_down_projection)

    def lora_modules(self, name: str) -> bool:
        """Under ``model.lora`` the adapter, too, sits on the MLP output projections only."""
        return _is_down_projection(name)

    def prepare(self, task: UnlearnTask) -> None:
        device = model_device(task.model)
        self.layer = self.steered_layer(task)
        self.forget = encode_fact_answers(task.tokenizer, task.forget_facts, device)
        self.retain = encode_fact_answers(task.tokenizer, task.split.retain, device)
        gen = torch.Generator().manual_seed(task.seed)
        with torch.no_grad():
            h_f = residual_at_layer(task.model, self.forget.input_ids, self.forget.attention_mask, self.layer)
            self.retain_ref = residual_at_layer(
                task.model, self.retain.input_ids, self.retain.attention_mask, self.layer
            )
        not_first = self.forget.attention_mask.bool().clone()
        not_first[:, 0] = False  # the first token: a document start or an attention sink, not text
        norm = h_f[not_first].norm(dim=-1).mean()
        # the paper samples u uniformly in [0, 1), then normalises; drawn on the CPU so every device draws the same u
        u = torch.rand(h_f.shape[-1], generator=gen).to(device)
        self.control = self.cfg.steering_scale * norm * u / u.norm()

    def loss(self, task: UnlearnTask, step: int, rng: random.Random) -> dict[str, torch.Tensor]:
        f = self.forget.rows(torch.tensor(sample_rows(len(self.forget), self.cfg.batch_size, rng)))
        idx = torch.tensor(sample_rows(len(self.retain), self.cfg.batch_size, rng))
        r = self.retain.rows(idx)
        h_f = residual_at_layer(task.model, f.input_ids, f.attention_mask, self.layer)
        h_r = residual_at_layer(task.model, r.input_ids, r.attention_mask, self.layer)
        fm, rm = f.attention_mask.bool(), r.attention_mask.bool()
        forget = (h_f[fm] - self.control).pow(2).mean()
        retain = (h_r[rm] - self.retain_ref[idx][rm]).pow(2).mean()
        return {"forget": forget, "retain": self.cfg.alpha * retain}
