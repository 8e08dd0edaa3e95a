"""Data parallelism under ``accelerate launch`` (or ``torchrun``): one copy of the pipeline per process.

Every process runs the same deterministic pipeline. The expensive parts split their rows across
processes and then agree again: activation capture gathers every process's rows (all hold the
same activations afterwards), and the unlearning loop sums every process's gradients (all hold
the same weights after each step). Files are written by the main process only. In one process
(the usual case) every helper here is a no-op, and ``torch.distributed`` is never initialised.

accelerate's ``PartialState`` sets up the process group (gloo on CPU, NCCL on GPU) from the
launcher's environment. We do not use ``Accelerator.prepare``/DDP for the model: our losses run
several partial forward passes per step (stopped at the SAE's layer), which DDP's one-forward-
one-backward bookkeeping does not allow; summing gradients ourselves is the same arithmetic.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
from typing import Callable, Iterator, TypeVar

import torch

T = TypeVar("T")
_local_only = False  # inside ``local_compute()``: this process works alone, no collectives


def launched() -> bool:
    """True under a multi-process launcher (it sets WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@functools.cache
def _state():
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())  # without cpu=True it would not see the CPU processes
    atexit.register(shutdown)  # an exit without leaving the process group aborts the other processes
    return state


def num_processes() -> int:
    """Processes in this launch (for the record; unlike ``world_size`` also inside ``local_compute``)."""
    return _state().num_processes if launched() else 1


def world_size() -> int:
    return _state().num_processes if launched() and not _local_only else 1


def rank() -> int:
    return _state().process_index if launched() else 0


def is_main() -> bool:
    return rank() == 0


def local_device(device: torch.device) -> torch.device:
    """A CUDA device becomes this process's own GPU under a launcher."""
    if launched() and device.type == "cuda":
        return torch.device("cuda", _state().local_process_index)
    return device


def barrier() -> None:
    if world_size() > 1:
        _state().wait_for_everyone()


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """Build-once work (model conversion, caches): the main process does it, the others then read it."""
    if world_size() > 1:
        with _state().main_process_first():
            yield
    else:
        yield


@contextlib.contextmanager
def local_compute() -> Iterator[None]:
    """Work that only this process does (e.g. the main process writing reports): no collectives."""
    global _local_only
    before, _local_only = _local_only, True
    try:
        yield
    finally:
        _local_only = before


def main_only(work: Callable[[], T]) -> T:
    """``work`` (writing outputs, preparing the output dir) on the main process alone, without
    collectives; every process returns its result. An error there ends the launch (the launcher
    stops the other processes)."""
    if world_size() <= 1:
        return work()
    from accelerate.utils import broadcast_object_list

    box: list = [None]
    if is_main():
        with local_compute():
            box[0] = work()
    broadcast_object_list(box, from_process=0)
    return box[0]


def shard(n: int) -> range:
    """This process's contiguous block of ``n`` rows (blocks in rank order cover 0..n-1)."""
    world = world_size()
    r = rank() if world > 1 else 0  # inside local_compute a process takes every row
    per, extra = divmod(n, world)
    start = r * per + min(r, extra)
    return range(start, start + per + (1 if r < extra else 0))


def gather_rows(local: torch.Tensor) -> torch.Tensor:
    """Concatenate every process's rows in rank order (row counts may differ); all get the result."""
    if world_size() <= 1:
        return local
    import torch.distributed as dist

    device = _state().device  # the backend's device: NCCL gathers only GPU tensors
    sizes = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(world_size())]
    dist.all_gather(sizes, torch.tensor([local.shape[0]], device=device))
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros((longest, *local.shape[1:]), dtype=local.dtype, device=device)
    padded[: local.shape[0]] = local.to(device)
    parts = [torch.empty_like(padded) for _ in range(world_size())]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes)]).to(local.device)


def sum_across(tensors: list[torch.Tensor]) -> None:
    """In-place sum over processes (one flat buffer: one collective per step, not one per tensor)."""
    if world_size() <= 1 or not tensors:
        return
    import torch.distributed as dist

    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()


def agree(flag: bool) -> bool:
    """The main process's value of ``flag`` on every process (e.g. "is the cache there?")."""
    if world_size() <= 1:
        return flag
    from accelerate.utils import broadcast_object_list

    box = [flag]
    broadcast_object_list(box, from_process=0)
    return bool(box[0])


def shutdown() -> None:
    """Leave the process group (registered to run at exit)."""
    if launched():
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
