"""Data parallel under `accelerate launch`: 2 CPU processes (gloo) reach what one process reaches."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import MICRO
from test_resume import CHILD as KILLED_AT_STEP_8  # the real CLI, with a loss that SIGKILLs itself at step 8
from typer.testing import CliRunner

from sae_unlearn.cli import app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())["methods"]["sae_guided"]


@pytest.fixture(scope="module")
def one_process_run(
    micro_workspace, tmp_path_factory
) -> tuple[Path, Path]:  # micro_workspace: world model and SAE cached
    """(config, output) of the micro world's unlearning in one process: the reference for every launch."""
    tmp = tmp_path_factory.mktemp("parallel")
    cfg = json.loads(json.dumps(MICRO))
    # a sampled forget batch: every process draws the same rows and splits them (issue 7's many-target path)
    # checkpoints every 5 steps and no early stop: the FSDP run can be killed at step 8 and resumed
    cfg["unlearn"] |= {"steps": 20, "checkpoint_every": 5}
    # the baselines' recipe too: under FSDP the clipped norm is the whole model's, summed over the shards
    cfg["unlearn"]["methods"]["sae_guided"] |= {
        "stop_toward": 0.0,
        "forget_batch": 5,
        "lr_schedule": "linear",
        "warmup": 0.2,
        "max_grad_norm": 1e-3,
    }
    config = tmp / "cfg.yaml"
    config.write_text(yaml.safe_dump(cfg))
    one = tmp / "one"
    assert CliRunner().invoke(app, ["unlearn", "--config", str(config), "--out", str(one)]).exit_code == 0
    return config, one


def _launch(
    config: Path, out: Path, launcher_flags: list[str], *extra: str, program: tuple[str, ...] = ("-m", "sae_unlearn")
) -> subprocess.CompletedProcess:
    accelerate = Path(sys.executable).parent / "accelerate"
    launch = [
        str(accelerate),
        "launch",
        *launcher_flags,
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
        *program,
        "--verbose",
        "unlearn",
        "--config",
        str(config),
        "--out",
        str(out),
        *extra,
    ]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    return subprocess.run(launch, capture_output=True, text=True, env=env, timeout=600, check=False)


def _launch_run(config: Path, out: Path, launcher_flags: list[str], *extra: str) -> tuple[dict, str]:
    done = _launch(config, out, launcher_flags, *extra)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    record = json.loads((out / "metrics.json").read_text())
    assert record["processes"] == 2  # really one run over two processes
    # one process wrote the outputs, whole: the model with weights, not a race of two writers
    assert (out / "model" / "model.safetensors").exists() and (out / "report.md").exists()
    assert not list(out.glob(".*.tmp"))
    assert not (out / "checkpoints").exists()  # finished: checkpoints cleaned up
    return record, done.stdout + done.stderr


def _assert_same_edit(a: dict, b: dict) -> None:
    assert b["steps"] == a["steps"] == 20
    # The loss splits its rows across the two processes and the gradients are summed: the same
    # arithmetic up to float summation order, so the edited models agree closely.
    for key in (
        "forget_recall_after",
        "retain_recall_after",
        "heldout_known_recall_after",
        "forget_classified_unknown_after",
    ):
        assert b[key] == pytest.approx(a[key], abs=0.03), key
    for key in ("perplexity_after", "forget_dist_known_after", "forget_dist_unknown_after"):
        assert b[key] == pytest.approx(a[key], rel=1e-3), key
    assert a["forget_dist_known_after"] > a["forget_dist_known_before"]  # it did unlearn


def test_two_processes_match_one(one_process_run, tmp_path):
    """``accelerate launch --multi_gpu`` gives the one-process edit. Run with ``w_relearn`` on, the costliest path:
    its simulated step's taught and checked facts are split over the processes and the step's gradient is summed
    across them, so every process takes the one-process step (left unsummed, perplexity came out 6.315 vs 6.267)."""
    config, _ = one_process_run
    cfg = yaml.safe_load(config.read_text())
    cfg["unlearn"]["methods"]["sae_guided"]["w_relearn"] = 1.0
    relearn = tmp_path / "relearn.yaml"
    relearn.write_text(yaml.safe_dump(cfg))
    one = tmp_path / "one"
    assert CliRunner().invoke(app, ["unlearn", "--config", str(relearn), "--out", str(one)]).exit_code == 0
    record, log = _launch_run(relearn, tmp_path / "two", ["--multi_gpu"])
    assert record["fsdp"] is False and "FSDP" not in log
    _assert_same_edit(_metrics(one), record["methods"]["sae_guided"])


@pytest.fixture(scope="module")
def fsdp_run(one_process_run, tmp_path_factory) -> tuple[dict, str]:
    config, _ = one_process_run
    return _launch_run(config, tmp_path_factory.mktemp("fsdp") / "out", ["--use_fsdp"])


def test_fsdp_shards_training_and_matches_one_process(one_process_run, fsdp_run):
    """``accelerate launch --use_fsdp``: weights, gradients and Adam moments sharded over 2 processes
    (FSDP2 on gloo); the gathered model equals the one-process edit."""
    _, one = one_process_run
    record, log = fsdp_run
    assert record["fsdp"] is True
    held = re.findall(r"FSDP: process (\d) holds (\d+) of (\d+) trained weights", log)
    assert sorted(h[0] for h in held) == ["0", "1"], log[-3000:]  # both processes trained a shard ...
    assert sum(int(h[1]) for h in held) == int(held[0][2])  # ... and the shards add up to the whole
    _assert_same_edit(_metrics(one), record["methods"]["sae_guided"])


def test_fsdp_run_killed_then_resumed_matches_uninterrupted_one(one_process_run, fsdp_run, tmp_path):
    """Checkpoints under FSDP gather the shards into full tensors; ``--resume`` cuts them back."""
    config, _ = one_process_run
    child = tmp_path / "killed_at_step_8.py"
    child.write_text(KILLED_AT_STEP_8)
    out = tmp_path / "killed"
    killed = _launch(config, out, ["--use_fsdp"], program=(str(child),))
    assert killed.returncode != 0, killed.stdout[-2000:]
    assert not (out / "metrics.json").exists()
    assert sorted(p.name for p in (out / "checkpoints" / "sae_guided").iterdir()) == ["step-000005"]

    record, log = _launch_run(config, out, ["--use_fsdp"], "--resume")
    assert "resumed from" in log and "(step 5)" in log, log[-3000:]
    got, want = record["methods"]["sae_guided"], fsdp_run[0]["methods"]["sae_guided"]
    numbers = [k for k, v in want.items() if isinstance(v, (int, float)) and not k.endswith("seconds")]
    assert got["steps"] == want["steps"] == 20
    assert {k: got[k] for k in numbers} == pytest.approx({k: want[k] for k in numbers}, abs=1e-6)
