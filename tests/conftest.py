"""Fixtures build tiny models, SAEs and worlds in temp dirs; nothing is downloaded."""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)

# CI is CPU-only; on a GPU machine `SAE_UNLEARN_TEST_DEVICE=cuda pytest` runs the same pipeline tests on CUDA
TEST_DEVICE = os.environ.get("SAE_UNLEARN_TEST_DEVICE", "cpu")


def installed(distribution: str) -> bool:
    """Whether a PyPI distribution (a built-in model's wheel) is installed: tests of that model skip without it."""
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


MICRO = {
    "seed": 3,
    "device": TEST_DEVICE,
    "world": {"seed": 3, "n_known": 10, "n_obscure": 8, "n_unknown": 8},
    "world_model": {"n_layer": 3, "d_model": 96, "n_head": 4, "epochs": 40, "batch_size": 32, "lr": 3e-3},
    "sae": {"total_samples": 40000, "batch_size": 256},
    # stronger than the defaults: the micro world's 3-layer model needs it to move within the budget
    "unlearn": {
        "n_forget": 4,
        "steps": 150,
        "methods": {"sae_guided": {"lr": 5e-3, "w_retain": 3.0, "stop_toward": 0.005, "retain_batch": 64}},
    },
    "eval": {"known_threshold": 0.8},
}


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory) -> Path:
    """Every test session gets its own cache, so tests never read a user's cached models."""
    cache = tmp_path_factory.mktemp("sae-unlearn-cache")
    os.environ["SAE_UNLEARN_CACHE"] = str(cache)
    return cache


@pytest.fixture(scope="session")
def micro_config_file(tmp_path_factory) -> Path:
    import yaml

    path = tmp_path_factory.mktemp("cfg") / "micro.yaml"
    path.write_text(yaml.safe_dump(MICRO))
    return path


@pytest.fixture(scope="session")
def micro_workspace(micro_config_file):
    """The micro world's model and SAE, built once per session through the real pipeline."""
    from sae_unlearn.config import load_config
    from sae_unlearn.stages.latents import select_latents
    from sae_unlearn.stages.sae import get_sae
    from sae_unlearn.stages.split import make_split
    from sae_unlearn.stages.subject import build_synthetic

    cfg = load_config(micro_config_file)
    return select_latents(make_split(get_sae(build_synthetic(cfg, progress=False), progress=False)))


@pytest.fixture(scope="session")
def micro_compare_dir(micro_config_file, micro_workspace, tmp_path_factory) -> Path:
    """`compare` of every method on the micro world (20 steps), models saved: shared by the
    comparison, attack and report tests."""
    from typer.testing import CliRunner

    from sae_unlearn.cli import app

    out = tmp_path_factory.mktemp("compare") / "cmp"
    result = CliRunner().invoke(
        app,
        [
            "compare",
            "--synthetic",
            "--out",
            str(out),
            "--config",
            str(micro_config_file),
            "--steps",
            "20",
            "--save-models",
            "--no-sweep",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    return out
