"""FSDP for the unlearning loop: under ``accelerate launch --use_fsdp`` the weights being trained, their
gradients and their Adam moments are sharded across processes (torch FSDP2 ``fully_shard``: one unit
per decoder block plus the root), so each process holds ~1/N of the training state.

Why our own wrapper instead of ``Accelerator.prepare``: our losses run several partial forward passes
per step (stopped at the SAE's layer, or with that layer's output replaced), which accelerate's
one-model/one-optimizer bookkeeping does not expect, and the sharded copy must be turned back into a
plain model afterwards for evaluation and saving. Scope and limits: docs/reliability_and_scale.md.
"""

from __future__ import annotations

import copy
import logging
import os

import torch
from torch import nn

from sae_unlearn import parallel
from sae_unlearn.errors import UserInputError
from sae_unlearn.models.layers import decoder_layers

log = logging.getLogger(__name__)


def fsdp_launched() -> bool:
    """``accelerate launch --use_fsdp`` (it sets ACCELERATE_USE_FSDP) with more than one process."""
    return os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true") and parallel.num_processes() > 1


def fsdp_requested() -> bool:
    """Shard now: FSDP was launched and the processes work together (not inside ``local_compute``)."""
    return fsdp_launched() and parallel.world_size() > 1


def shard_for_training(model: nn.Module) -> nn.Module:
    """A sharded copy of ``model`` (which is moved to host memory until the weights come back)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    device = next(model.parameters()).device
    sharded = copy.deepcopy(model)
    model.to("cpu")  # the untouched full copy waits off the accelerator
    mesh = init_device_mesh(device.type, (parallel.world_size(),))
    for block in decoder_layers(sharded):
        fully_shard(block, mesh=mesh)
    fully_shard(sharded, mesh=mesh)
    trained = [p for p in sharded.parameters() if p.requires_grad]
    local = sum(p.to_local().numel() for p in trained)  # type: ignore[attr-defined]  # FSDP2 made them DTensors
    total = sum(p.numel() for p in trained)
    log.info(
        "FSDP: process %d holds %d of %d trained weights (%.0f %%)",
        parallel.rank(),
        local,
        total,
        100 * local / max(1, total),
    )
    return sharded


def gather_into(sharded: nn.Module, plain: nn.Module, device: torch.device) -> nn.Module:
    """Every process gets the trained full weights in ``plain`` (a collective: all processes call it)."""
    from torch.distributed.tensor import DTensor

    full = {
        name: (p.full_tensor() if isinstance(p, DTensor) else p).detach().to("cpu")
        for name, p in sharded.named_parameters()
    }
    missing = [n for n, _ in plain.named_parameters() if n not in full]
    if missing:
        raise RuntimeError(f"FSDP copy lacks parameters {missing[:3]}: cannot gather the trained weights.")
    with torch.no_grad():
        for name, p in plain.named_parameters():
            p.copy_(full[name])
    return plain.to(device)


def check_rows_per_process(rows: dict[str, int]) -> None:
    """Under FSDP every process must run the same forward passes (each one gathers the weights), so
    every process needs rows of each batch."""
    world = parallel.world_size()
    short = {k: v for k, v in rows.items() if v < world}
    if short:
        raise UserInputError(
            f"FSDP over {world} processes needs at least {world} rows per batch; got "
            + ", ".join(f"{k}={v}" for k, v in short.items())
            + ". Raise them (unlearn.methods.sae_guided.forget_batch / retain_batch) or use fewer processes."
        )
