"""Probing results of a real model, kept between runs (JSON under the cache root).

Why: deciding whom the model knows (greedy recall of every entity in the file) and which facts it
also completes for made-up names costs ~100 s of a SmolLM2 run on 2 CPU cores, yet depends only on
the weights, the entity file and the evaluation settings; `demo`, `run` and `compare` on the same
model would repeat it. The key adds the weight files' sizes and modification times to what the
SAE cache uses, so a local model edited in place is probed again. JSON only: no pickle is loaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

from sae_unlearn.entities.types import Entity
from sae_unlearn.io_utils import atomic_write_json, cache_root

log = logging.getLogger(__name__)

_FORMAT = 2  # 2: whole-word answer matching and training-phrasing probing (2026-12-04)
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt")


def _weights_fingerprint(model_dir: Path) -> list:
    if not model_dir.is_dir():
        return [str(model_dir)]
    return sorted(
        [p.name, p.stat().st_size, int(p.stat().st_mtime)] for p in model_dir.iterdir() if p.suffix in _WEIGHT_SUFFIXES
    )


def probing_cache_path(model_dir: Path, settings: dict, entities: list[Entity]) -> Path:
    """``settings``: everything else the results depend on (dtype, device, decoding, substitutes, seed)."""
    payload = {
        "format": _FORMAT,
        "model": str(model_dir),
        "weights": _weights_fingerprint(Path(model_dir)),
        "settings": settings,
        "entities": [e.to_dict(aliases=False) for e in entities],
    }
    key = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return cache_root() / "probing" / f"{key}.json"


def save_probing(path: Path, probing: dict[str, float], entities: list[Entity] | None) -> None:
    """``entities`` carry the ``answerable`` flags (None: the check was not run)."""
    answerable = (
        None if entities is None else {e.name: [i for i, f in enumerate(e.facts) if f.answerable] for e in entities}
    )
    atomic_write_json(path, {"probing": probing, "answerable": answerable})


def load_probing(path: Path, entities: list[Entity]) -> tuple[dict[str, float], list[Entity] | None] | None:
    """(recall shares, entities with their facts' ``answerable`` flags, or None when the check was
    not cached); None when nothing usable is cached."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        probing = {str(k): float(v) for k, v in data["probing"].items()}
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as err:  # a damaged cache is recomputed
        log.warning("ignoring unreadable probing cache %s (%s)", path, err)
        return None
    if set(probing) != {e.name for e in entities}:
        return None
    flags = data.get("answerable")
    if flags is None:
        return probing, None
    flagged = [
        dataclasses.replace(
            e, facts=[dataclasses.replace(f, answerable=i in set(flags.get(e.name, []))) for i, f in enumerate(e.facts)]
        )
        for e in entities
    ]
    return probing, flagged
