"""Crash safety: a run killed with SIGKILL mid-unlearning and resumed ends where an uninterrupted one does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from conftest import MICRO
from safetensors.torch import load_file
from typer.testing import CliRunner

from sae_unlearn.cli import app
from sae_unlearn.methods.row_files import SCRATCH_PREFIX

KILL_AT_STEP = 8  # after the checkpoint of step 5 and before the one of step 10

# The child is the real CLI; the only change is a loss that SIGKILLs its own process at one step,
# so the kill lands between checkpoints at a known point instead of racing a timer.
CHILD = f"""
import os, signal, sys
from sae_unlearn.methods.sae_guided import SAEGuidedUnlearner
original = SAEGuidedUnlearner.loss
def loss(self, task, step, rng):
    if step == {KILL_AT_STEP}:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, task, step, rng)
SAEGuidedUnlearner.loss = loss
from sae_unlearn.cli import app
app(sys.argv[1:])
"""


@pytest.fixture(scope="module")
def resume_config(tmp_path_factory, micro_workspace) -> Path:  # micro_workspace: world model and SAE cached
    cfg = json.loads(json.dumps(MICRO))
    cfg["unlearn"] |= {"steps": 20, "checkpoint_every": 5}
    # no early stop: all 20 steps run; the baselines' recipe (warmup, linear decay, clipping): the resumed run
    # must pick the schedule up at the step it stopped
    cfg["unlearn"]["methods"]["sae_guided"] |= {
        "stop_toward": 0.0,
        "lr_schedule": "linear",
        "warmup": 0.2,
        "max_grad_norm": 1e-3,
    }
    path = tmp_path_factory.mktemp("resume") / "resume.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _unlearn(config: Path, out: Path, *extra: str):
    return CliRunner().invoke(app, ["unlearn", "--config", str(config), "--out", str(out), *extra])


def _numbers(metrics_file: Path) -> dict:
    m = json.loads(metrics_file.read_text())["methods"]["sae_guided"]
    return {k: v for k, v in m.items() if isinstance(v, (int, float)) and not k.endswith("seconds")}  # timings differ


def test_sigkill_then_resume_matches_uninterrupted_run(resume_config, tmp_path):
    killed = tmp_path / "killed"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, "unlearn", "--config", str(resume_config), "--out", str(killed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    _, stderr = child.communicate(timeout=600)
    assert child.returncode == -signal.SIGKILL, stderr[-2000:]
    left_behind = list(Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}{child.pid}@*"))
    assert left_behind  # SIGKILL runs no finaliser: the killed run's references are still on disk
    assert not (killed / "metrics.json").exists()  # killed mid-run: no outputs, half-written or otherwise
    steps = sorted(p.name for p in (killed / "checkpoints" / "sae_guided").iterdir())
    assert steps == ["step-000005"]
    assert (killed / "checkpoints" / "original" / "original.json").is_file()  # the "before" state, measured once

    again = _unlearn(resume_config, killed)  # without --resume the interrupted run is not clobbered
    assert again.exit_code == 2 and "--overwrite" in again.output

    other = _unlearn(resume_config, killed, "--resume", "--steps", "30")
    assert other.exit_code == 2 and "unlearn.steps" in other.output  # another config: refused, named

    resumed = _unlearn(resume_config, killed, "--resume")
    assert resumed.exit_code == 0, resumed.output
    # not measured again; the numbers below equal a straight run's, "before" keys included
    assert "the original model's evaluation and floors: read from the interrupted run" in resumed.output
    assert "evaluating the original model" not in resumed.output
    assert not (killed / "checkpoints").exists()  # finished: checkpoints cleaned up
    assert not any(d.exists() for d in left_behind)  # ... and the killed run's scratch references too

    straight = tmp_path / "straight"
    assert _unlearn(resume_config, straight).exit_code == 0
    got, want = _numbers(killed / "metrics.json"), _numbers(straight / "metrics.json")
    assert got["steps"] == want["steps"] == 20
    assert got == pytest.approx(want, abs=1e-6)
    w_resumed = load_file(str(killed / "model" / "model.safetensors"))
    w_straight = load_file(str(straight / "model" / "model.safetensors"))
    assert all((w_resumed[k] == w_straight[k]).all() for k in w_straight)  # bit for bit


def test_resume_refuses_a_finished_run(resume_config, tmp_path):
    out = tmp_path / "done"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    result = _unlearn(resume_config, out, "--resume")
    assert result.exit_code == 2 and "nothing to resume" in result.output
    assert (out / "metrics.json").read_text() == "{}"
