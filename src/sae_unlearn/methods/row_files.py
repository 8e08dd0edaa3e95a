"""Reference tensors that grow with the number of targets, kept in scratch files; a step reads back its rows.

Why: a method that precomputes per forget prompt what the original model did (SAE-guided: the unknown and known
entities' codes at every position after the entity, and the unknown entities' next-token distribution, a whole
vocabulary per prompt) would otherwise hold memory in proportion to the targets (2.7 MB per target on SmolLM2,
about 8 MB with Gemma-3's 262k-token vocabulary: gigabytes at a thousand targets), while each step reads only its sampled rows.
Why by hand: a memory map (numpy, Arrow/``datasets``) counts every page a step has touched in the process's resident
memory until the OS reclaims it; positioned reads into a fresh tensor hold what the step reads and nothing more.
No maintained library offers append-then-random-row-reads for tensors (safetensors writes a whole file at once).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path

import torch


class RowFile:
    """Fixed-width rows appended in order to one file; ``read`` returns chosen rows, runs of consecutive rows in one
    read each, in the dtype they were written in (stored as float32, which holds bfloat16 and float16 exactly: a
    bfloat16 model's residual fed back to it must stay bfloat16)."""

    def __init__(self, path: Path, width: int):
        self.path, self.width, self.rows = path, width, 0
        self.dtype: torch.dtype | None = None  # the first written rows' dtype
        self._row_bytes = width * 4
        self._handle = open(path, "w+b")  # noqa: SIM115 (closed by ``close``, or with its ScratchRows)

    def __len__(self) -> int:
        return self.rows

    def append(self, rows: torch.Tensor) -> None:
        """Rows [n, width] (any leading shape that flattens to it), written after the existing ones."""
        self.dtype = self.dtype or rows.dtype
        flat = rows.detach().to("cpu", torch.float32).reshape(-1, self.width).contiguous()
        self._handle.seek(self.rows * self._row_bytes)
        self._handle.write(flat.numpy().tobytes())
        self.rows += flat.shape[0]

    def reserve(self, rows: int) -> None:
        """Make room for ``rows`` rows (zeros until written), to be filled out of order by ``write_rows``."""
        self._handle.truncate(max(rows, self.rows) * self._row_bytes)
        self.rows = max(rows, self.rows)

    def write_rows(self, index: Sequence[int] | torch.Tensor, rows: torch.Tensor) -> None:
        """Row ``index[i]`` := ``rows[i]`` (rows reserved first); batches computed in length order land in row
        order."""
        wanted = index.tolist() if isinstance(index, torch.Tensor) else list(index)
        if any(not 0 <= i < self.rows for i in wanted):
            raise IndexError(f"{self.path.name}: writing rows {min(wanted)}..{max(wanted)}, {self.rows} reserved")
        self.dtype = self.dtype or rows.dtype
        flat = rows.detach().to("cpu", torch.float32).reshape(len(wanted), self.width).contiguous().numpy()
        for i, row in zip(wanted, flat):
            self._handle.seek(i * self._row_bytes)
            self._handle.write(row.tobytes())

    def read(self, index: Sequence[int] | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
        """Rows ``index`` [len(index), width], in that order (repeats allowed)."""
        wanted = index.tolist() if isinstance(index, torch.Tensor) else list(index)
        if any(not 0 <= i < self.rows for i in wanted):
            raise IndexError(f"{self.path.name}: rows {min(wanted)}..{max(wanted)} asked, {self.rows} held")
        out = torch.empty((len(wanted), self.width), dtype=torch.float32)
        view = out.numpy()
        start = 0
        while start < len(wanted):  # one read per run of consecutive rows
            stop = start + 1
            while stop < len(wanted) and wanted[stop] == wanted[stop - 1] + 1:
                stop += 1
            self._handle.seek(wanted[start] * self._row_bytes)
            got = self._handle.readinto(view[start:stop].data.cast("B"))
            if got != (stop - start) * self._row_bytes:
                raise OSError(f"{self.path}: short read ({got} bytes); the scratch file was changed or truncated")
            start = stop
        return out.to(device, self.dtype or torch.float32)

    def read_spans(self, spans: Sequence[tuple[int, int]], device: torch.device | str = "cpu") -> torch.Tensor:
        """Rows ``a..b-1`` of each span (a, b), concatenated in order."""
        return self.read([i for a, b in spans for i in range(a, b)], device)

    def close(self) -> None:
        self._handle.close()


SCRATCH_PREFIX = "sae-unlearn-references-"


class ScratchRows:
    """A scratch directory of ``RowFile``s, removed on ``close`` or when this object is collected (also after an
    exception), so no run leaves its references on disk. Lives under ``$TMPDIR`` (``tempfile``'s rule).

    A process killed outright (SIGKILL, the OOM killer) runs no finaliser: its directory (gigabytes at a thousand
    targets) would stay for good. So the name carries the owner's host and process id, and each new scratch
    directory first removes those of this host whose process is gone (``remove_orphaned_scratch``)."""

    def __init__(self, prefix: str = SCRATCH_PREFIX):
        remove_orphaned_scratch(prefix)
        self.directory = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}@{socket.gethostname()}-"))
        self.files: dict[str, RowFile] = {}
        self._cleanup = weakref.finalize(self, _remove, self.files, self.directory)

    def file(self, name: str, width: int) -> RowFile:
        if name in self.files:
            raise ValueError(f"row file {name!r} already exists in {self.directory}")
        self.files[name] = RowFile(self.directory / f"{name}.f32", width)
        return self.files[name]

    def close(self) -> None:
        self._cleanup()


def remove_orphaned_scratch(prefix: str = SCRATCH_PREFIX) -> list[Path]:
    """Remove the scratch directories under ``$TMPDIR`` that a process of this host left when it was killed; return
    them. A directory whose owner is alive, of another host (whose processes this one cannot see), or named without
    an owner is kept."""
    host = socket.gethostname()
    removed = []
    for directory in Path(tempfile.gettempdir()).glob(f"{prefix}*@*"):
        pid, _, rest = directory.name[len(prefix) :].partition("@")
        if not pid.isdigit() or rest.rpartition("-")[0] != host or _alive(int(pid)):
            continue
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(directory)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove(files: dict[str, RowFile], directory: Path) -> None:
    for f in files.values():
        f.close()
    shutil.rmtree(directory, ignore_errors=True)
