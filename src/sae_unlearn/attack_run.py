"""``sae-unlearn attack``: every attack on models a run saved (or on any model directory), with the run's own config,
written as a run's outputs."""

from __future__ import annotations

import json
from pathlib import Path

from sae_unlearn import parallel
from sae_unlearn.attacks.saved import check_saved_model, load_edited, saved_models
from sae_unlearn.config import load_config
from sae_unlearn.errors import UserInputError
from sae_unlearn.evaluation.evaluate import method_metrics
from sae_unlearn.io_utils import prepare_output_dir
from sae_unlearn.report.outputs import write_run_outputs
from sae_unlearn.runs import prepare_workspace
from sae_unlearn.state import Workspace


def attack_run(
    run_dir: Path | None,
    out: Path,
    model: Path | None = None,
    config: Path | None = None,
    overrides: dict | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Attack the models saved in ``run_dir`` (or ``model``), with the run's config; writes a run's
    outputs (metrics.json with every attack key, report.md/.html, plots) into ``out``."""
    if run_dir is None and (config is None or model is None):
        raise UserInputError(
            "Give --run (a directory written by demo, run or compare), or --config (the run's "
            "config.yaml) with --model."
        )
    if config is None:
        assert run_dir is not None
        config = run_dir / "config.yaml"
        if not config.exists():
            raise UserInputError(f"{run_dir} has no config.yaml: is it an output directory of demo, run or compare?")
    targets = {"model": model} if model is not None else saved_models(run_dir) if run_dir is not None else {}
    if not targets:
        raise UserInputError(
            f"No saved model in {run_dir}: compare saves models only with --save-models; or pass --model DIR."
        )
    for path in targets.values():
        check_saved_model(path)
    cfg = load_config(config, overrides)
    out = parallel.main_only(lambda: prepare_output_dir(out, overwrite))  # one writer under a launcher
    ws, baseline = prepare_workspace(cfg, progress and parallel.is_main())
    _check_same_split(ws, run_dir)
    results, edited = {}, {}
    for name, path in targets.items():
        edited_model, outcome = load_edited(ws, path)
        results[name] = (
            method_metrics(ws.evaluation, edited_model, outcome, 0.0, baseline) | {"source": str(path)},
            outcome,
        )
        edited[name] = edited_model
    return parallel.main_only(lambda: write_run_outputs(out, ws, results, edited))


def _check_same_split(ws: Workspace, run_dir: Path | None) -> None:
    """The rebuilt targets must be the run's targets, or every number would be about other entities."""
    if run_dir is None or not (run_dir / "metrics.json").exists():
        return
    saved = json.loads((run_dir / "metrics.json").read_text()).get("forget")
    assert ws.split is not None
    rebuilt = [e.name for e in ws.split.forget]
    if saved is not None and saved != rebuilt:
        raise UserInputError(
            f"The run's targets {saved} differ from the ones rebuilt from its config {rebuilt}; "
            "the entity file or model changed since the run. Attack with the run's own inputs."
        )
