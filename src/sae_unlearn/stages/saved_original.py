"""The original model's evaluation kept beside the method checkpoints, so ``--resume`` does not measure it again.

Why: it is the same for every method and costs minutes (Gemma-3-270M: 185 s of recall and floors plus the
relearning attack's floors on 2 cores), and a long comparison is resumed often. Tensors go to safetensors and
the rest to JSON (no pickle, as the method checkpoints); it is tied to the configuration as the method records
are (``stages.unlearn.config_fingerprint``), a record of another one is ignored, not trusted, and nothing is kept
when the run keeps no checkpoints (``unlearn.checkpoint_every`` 0).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from safetensors.torch import load_file, save_file

from sae_unlearn.config import DemoConfig
from sae_unlearn.io_utils import atomic_save_dir, atomic_write_json
from sae_unlearn.stages.unlearn import config_fingerprint
from sae_unlearn.state import OriginalFloors

ORIGINAL = "original"  # under OUT/checkpoints/
log = logging.getLogger(__name__)


def _config_json(cfg: DemoConfig) -> dict:
    return json.loads(json.dumps(config_fingerprint(cfg), default=str))  # as it reads back from the file


def save_original(directory: Path, cfg: DemoConfig, baseline: dict, floors: OriginalFloors) -> None:
    if cfg.unlearn.checkpoint_every == 0:
        return

    def write(tmp: Path) -> None:
        record = {"config": _config_json(cfg), "baseline": baseline, "relearn_floors": floors.relearn_floors}
        atomic_write_json(tmp / "original.json", record)
        save_file({k: v.detach().cpu().contiguous() for k, v in floors.codes.items()}, str(tmp / "codes.safetensors"))

    atomic_save_dir(Path(directory) / ORIGINAL, write)


def load_original(directory: Path, cfg: DemoConfig) -> tuple[dict, OriginalFloors] | None:
    """(the "before" metrics, the floors) saved by a run of this very configuration, else None."""
    if cfg.unlearn.checkpoint_every == 0:
        return None
    path = Path(directory) / ORIGINAL
    try:
        record = json.loads((path / "original.json").read_text())
        codes = load_file(str(path / "codes.safetensors"))
    except (OSError, ValueError):
        return None
    if record.get("config") != _config_json(cfg):
        log.warning("%s holds the original model's evaluation of another configuration: measuring it again", path)
        return None
    return record["baseline"], OriginalFloors(record["relearn_floors"], codes)
