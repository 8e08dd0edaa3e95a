"""Data parallel under `accelerate launch`: 2 CPU processes (gloo) reach what one process reaches."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sae_unlearn.cli import app
from conftest import MICRO


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())["methods"]["sae_guided"]


def test_two_processes_match_one(micro_workspace, tmp_path):  # micro_workspace: world model and SAE cached
    cfg = json.loads(json.dumps(MICRO))
    cfg["unlearn"] |= {"steps": 20, "checkpoint_every": 0}
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(cfg))

    one = tmp_path / "one"
    assert CliRunner().invoke(app, ["unlearn", "--config", str(config), "--out", str(one)]).exit_code == 0

    two = tmp_path / "two"
    accelerate = Path(sys.executable).parent / "accelerate"
    launch = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
              "-m", "sae_unlearn", "unlearn", "--config", str(config), "--out", str(two)]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run(launch, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert json.loads((two / "metrics.json").read_text())["processes"] == 2  # really one run over two processes

    a, b = _metrics(one), _metrics(two)
    assert b["steps"] == a["steps"] == 20
    # The loss splits its rows across the two processes and the gradients are summed: the same
    # arithmetic up to float summation order, so the edited models agree closely.
    for key in ("forget_recall_after", "retain_recall_after", "heldout_known_recall_after", "forget_classified_unknown_after"):
        assert b[key] == pytest.approx(a[key], abs=0.03), key
    for key in ("perplexity_after", "forget_dist_known_after", "forget_dist_unknown_after"):
        assert b[key] == pytest.approx(a[key], rel=1e-3), key
    assert a["forget_dist_known_after"] > a["forget_dist_known_before"]  # it did unlearn
    # one process wrote the outputs, whole: the model with weights, not a race of two writers
    assert (two / "model" / "model.safetensors").exists() and (two / "report.md").exists()
    assert not list(two.glob(".*.tmp"))
