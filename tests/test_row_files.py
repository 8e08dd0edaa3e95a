"""Scratch row files: the references that would grow with the targets live on disk, a step reads its rows."""

from __future__ import annotations

import copy
import gc
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from sae_unlearn.methods.row_files import SCRATCH_PREFIX, ScratchRows
from sae_unlearn.methods.sae_guided import SAEGuidedConfig, SAEGuidedUnlearner
from tests.test_split_and_methods import _task


def test_rows_read_back_in_the_asked_order_with_repeats_and_out_of_order_writes():
    scratch = ScratchRows()
    appended = scratch.file("appended", 3)
    data = torch.randn(7, 3)
    appended.append(data[:4])
    appended.append(data[4:])
    assert len(appended) == 7
    torch.testing.assert_close(appended.read([5, 0, 1, 2, 2, 6]), data[[5, 0, 1, 2, 2, 6]], rtol=0, atol=0)
    torch.testing.assert_close(appended.read_spans([(3, 5), (0, 1)]), data[[3, 4, 0]], rtol=0, atol=0)
    placed = scratch.file("placed", 2 * 3)
    placed.reserve(4)
    grid = torch.randn(4, 2, 3)
    placed.write_rows(torch.tensor([3, 1]), grid[[3, 1]])
    placed.write_rows([0, 2], grid[[0, 2]])
    torch.testing.assert_close(placed.read(range(4)).view(4, 2, 3), grid, rtol=0, atol=0)
    halves = scratch.file("bfloat16", 3)
    half_data = torch.randn(2, 3).bfloat16()  # a bfloat16 model's residuals come back as they went in
    halves.append(half_data)
    assert halves.read([1, 0]).dtype == torch.bfloat16
    torch.testing.assert_close(halves.read([1, 0]), half_data[[1, 0]], rtol=0, atol=0)
    with pytest.raises(IndexError, match="rows 0..7 asked, 7 held"):
        appended.read([0, 7])
    with pytest.raises(IndexError, match="4 reserved"):
        placed.write_rows([4], grid[:1])
    with pytest.raises(ValueError, match="already exists"):
        scratch.file("placed", 1)


def test_scratch_directory_is_removed_on_close_and_when_collected():
    closed = ScratchRows()
    closed.file("a", 2).append(torch.ones(3, 2))
    directory = closed.directory
    assert (directory / "a.f32").exists()
    closed.close()
    assert not directory.exists()
    dropped = ScratchRows()
    dropped.file("b", 1).append(torch.ones(1, 1))
    directory = dropped.directory
    del dropped
    gc.collect()
    assert not directory.exists()


def test_a_killed_runs_scratch_directory_is_removed_by_the_next_one_and_no_other():
    """SIGKILL runs no finaliser: the next scratch directory on this host removes the one a dead process left, and
    keeps those of living processes, of other hosts and of unknown owners."""
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    dead_pid, host, tmp = int(dead.stdout), socket.gethostname(), Path(tempfile.gettempdir())
    orphan = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{dead_pid}@{host}-"))
    (orphan / "known_codes.f32").write_bytes(b"\0" * 64)
    kept = [
        Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}1@{host}-")),  # pid 1 lives as long as the machine does
        Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{dead_pid}@another-host.example-")),
        Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}legacy")),
    ]
    try:
        scratch = ScratchRows()
        assert scratch.directory.parent == tmp and f"@{host}-" in scratch.directory.name
        assert not orphan.exists()
        assert all(k.exists() for k in kept)
        ScratchRows().close()  # a second one in the same (living) process leaves the first alone
        assert scratch.directory.exists()
        scratch.close()
    finally:
        for k in kept:
            k.rmdir()


def test_sae_guided_keeps_its_references_on_disk_once_per_template(micro_workspace):
    """The forget references live in scratch files, one row per distinct template and position: the synthetic
    world's entities of a type share their templates, so the file holds far fewer rows than the forget prompts
    have positions (with the mean of strangers; one stranger per target, the default, has one row per template
    and target); and nothing of the size of the references stays in memory."""
    ws = micro_workspace
    method = SAEGuidedUnlearner(SAEGuidedConfig(w_output=1.0, w_downstream=1.0, reference="mean"))
    method.prepare(_task(ws, copy.deepcopy(ws.model), steps=0))
    every_row = torch.arange(len(method.forget))
    positions = int(method.forget.after_entity_mask().sum())
    assert sum(b - a for a, b in method.reference_positions(every_row)) == positions
    assert len(method.unknown_codes) < positions, "one reference per template, not per forget prompt"
    own = SAEGuidedUnlearner(SAEGuidedConfig(w_output=1.0, w_downstream=1.0, reference="stranger"))
    own.prepare(_task(ws, copy.deepcopy(ws.model), steps=0))
    assert sum(b - a for a, b in own.reference_positions(every_row)) == positions
    assert len(method.unknown_codes) < len(own.unknown_codes) <= positions  # each target's own stranger
    del own
    assert method.unknown_next is not None and len(method.unknown_next) < len(method.forget)
    # what stays in memory is one number per row or position (margins, answer tokens), no code or distribution
    wide = {name: tuple(t.shape) for name, t in vars(method).items() if isinstance(t, torch.Tensor) and t.dim() > 1}
    assert not wide, f"per-row references held in memory: {wide}"
    directory = method.files.directory
    assert {p.name for p in directory.iterdir()} >= {"unknown_codes_and_error.f32", "retain_next_token.f32"}
    del method
    gc.collect()
    assert not directory.exists()
