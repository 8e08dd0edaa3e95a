"""The run drivers behind ``demo``, ``run``, ``compare``: stages 1-4 once, then each method from the same
original weights, its evaluation and attacks, and the outputs.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from torch import nn

from sae_unlearn import parallel
from sae_unlearn.attacks.suite import relearn_floors
from sae_unlearn.config import DemoConfig
from sae_unlearn.errors import UserInputError
from sae_unlearn.evaluation.evaluate import evaluate_original, method_metrics
from sae_unlearn.io_utils import CHECKPOINTS, atomic_write_json, atomic_write_text, prepare_output_dir
from sae_unlearn.methods import UnlearnOutcome, get_method
from sae_unlearn.models.generation import reuse_greedy_continuations
from sae_unlearn.progress import note, phase
from sae_unlearn.report.outputs import save_edited, write_run_outputs
from sae_unlearn.sae.loading import check_sae_source
from sae_unlearn.stages.latents import select_latents
from sae_unlearn.stages.sae import get_sae
from sae_unlearn.stages.saved_original import load_original, save_original
from sae_unlearn.stages.split import make_split
from sae_unlearn.stages.subject import build_workspace
from sae_unlearn.stages.tuning import (
    complete_curve,
    curve_point,
    settings_note,
    trial_checkpointers,
    tune_method,
    tuning_table,
    with_settings,
)
from sae_unlearn.stages.unlearn import load_evaluation, method_checkpointer, run_method, save_evaluation
from sae_unlearn.state import OriginalFloors, Workspace

log = logging.getLogger("sae_unlearn")


ALL_METHODS = (
    "sae_guided",
    "gradient_ascent",
    "grad_diff",
    "npo",
    "simnpo",
    "idk_nll",
    "idk_dpo",
    "rmu",
    "sae_clamp",
)


def prepare_workspace(cfg: DemoConfig, progress: bool = True, saved: Path | None = None) -> tuple[Workspace, dict]:
    """Stages 1-4, plus the "before" metrics every method shares (kept in ``saved``, see ``prepare_stages``)."""
    ws, baseline = prepare_stages(build_workspace(cfg, progress), progress, saved=saved)
    assert baseline is not None
    return ws, baseline


def prepare_stages(
    ws: Workspace, progress: bool = True, evaluate: bool = True, saved: Path | None = None
) -> tuple[Workspace, dict | None]:
    """Stages 2-4 on a subject (its SAE unless one is set already), then, with ``evaluate``, the original
    model's metrics and the relearning attack's floors, which every method's evaluation shares. With ``saved`` (a
    run's checkpoint directory) those are read from there when a run of the same configuration left them, and
    written there otherwise (stages/saved_original.py)."""
    if ws.sae is None:
        ws = get_sae(ws, progress)
    baseline = None
    with reuse_greedy_continuations(ws.model):  # probing's answers are the "before" state's too
        with phase("probing the entities, split and latent selection", progress):
            ws = select_latents(make_split(ws))
        kept = load_original(saved, ws.cfg) if evaluate and saved is not None else None
        if kept is not None:
            baseline = kept[0]
            ws = ws.with_(floors=kept[1])
            note("the original model's evaluation and floors: read from the interrupted run", progress)
        elif evaluate:
            t0 = time.time()
            with phase("evaluating the original model (recall on every phrasing, probes, floors)", progress):
                baseline, codes = evaluate_original(ws.evaluation)
            ws.timings["evaluate_original"] = time.time() - t0
            t0 = time.time()
            attacked = ws.cfg.attack.enabled and ws.cfg.attack.relearn_steps > 0
            with phase(
                "the relearning attack on the original model and unknown entities (floors)", progress and attacked
            ):
                ws = ws.with_(floors=OriginalFloors(relearn_floors(ws.evaluation), codes))
            ws.timings["relearn_floors"] = time.time() - t0
            if saved is not None:
                floors = ws.floors
                assert floors is not None
                parallel.main_only(partial(save_original, saved, ws.cfg, baseline, floors))
    return ws, baseline


def check_resumable(
    cfg: DemoConfig, out: Path, methods: tuple[str, ...], overwrite: bool, resume: bool, sweep: bool = False
) -> Path:
    """Prepare ``out``; with ``resume``, refuse checkpoints of another configuration before any compute (with
    ``sweep``, each tuning trial's)."""
    out = parallel.main_only(lambda: prepare_output_dir(out, overwrite, resume))
    if resume:
        for name in methods:
            checkpointers = trial_checkpointers(cfg, name, out, resume) if sweep else []
            for ckpt in checkpointers or [method_checkpointer(cfg, name, out, resume)]:
                if ckpt is not None:
                    ckpt.verify()
    return out


def run_methods(
    ws: Workspace,
    baseline: dict,
    methods: tuple[str, ...],
    progress: bool = True,
    out: Path | None = None,
    resume: bool = False,
    tuning: dict[str, dict] | None = None,
    sweeps: dict[str, list[dict]] | None = None,
    failed: dict[str, str] | None = None,
):
    """Each method from a fresh copy of the original weights, same split, budget and evaluation.

    With ``failed`` (a dict to fill; ``compare``), a method that cannot run on this setup (a ``UserInputError``:
    SAE clamping finding no latent of the targets' own, say) is recorded there with its message and the others go
    on, so an hour of comparison is not lost to its eighth method; without it the error stops the run.

    With ``out``, each method checkpoints under OUT/checkpoints (a finished one keeps its final state there until
    the outputs are written, so a resumed comparison skips it) and its evaluation is saved as soon as it is measured
    (``save_evaluation``: a resumed run reloads the weights and keeps the numbers). With ``tuning`` and ``sweeps``
    (dicts to fill), each method is tuned on the validation split first (stages/tuning.py; each trial
    checkpoints as a method does) and evaluated at the chosen value; ``sweeps`` gets each value's point for the plot."""
    results: dict[str, tuple[dict, UnlearnOutcome]] = {}
    edited: dict[str, nn.Module] = {}
    sweep = tuning is not None and sweeps is not None
    for name in methods:
        saved = load_evaluation(ws.cfg, name, out, sweep) if out is not None and resume else None
        if saved is not None and out is not None:
            # evaluated before the interruption: its weights from its checkpoint, its numbers as saved
            chosen = {saved["tuning"]["setting"]: saved["tuning"]["chosen"]} if sweep else None
            ckpt = method_checkpointer(ws.cfg, name, out, True, chosen)
            model, outcome, _ = run_method(ws, name, progress, chosen, ckpt)
            results[name], edited[name] = (saved["metrics"], outcome), model
            if tuning is not None and sweeps is not None:
                tuning[name], sweeps[name] = saved["tuning"], saved["curve"]
            continue
        try:
            if tuning is not None and sweeps is not None:
                model, outcome, seconds, tuning[name], others = tune_method(ws, name, progress, out, resume)
            else:
                ckpt = method_checkpointer(ws.cfg, name, out, resume) if out is not None else None
                model, outcome, seconds = run_method(ws, name, progress, checkpointer=ckpt)
            with phase(f"evaluating {name} (recall, probes, attacks)", progress):
                metrics = method_metrics(ws.evaluation, model, outcome, seconds, baseline)
        except UserInputError as err:
            if failed is None:
                raise
            failed[name] = str(err)
            log.warning("%s did not run, the comparison goes on without it: %s", name, err)
            continue
        results[name], edited[name] = (metrics, outcome), model
        record: dict = {"sweep": sweep, "metrics": results[name][0]}
        if tuning is not None and sweeps is not None:
            sweeps[name] = complete_curve(others, tuning[name], results[name][0])
            record |= {"tuning": tuning[name], "curve": sweeps[name]}
        if out is not None:
            parallel.main_only(partial(save_evaluation, ws.cfg, name, out, record))
    return results, edited


def run_demo(
    cfg: DemoConfig,
    out: Path,
    overwrite: bool = False,
    progress: bool = True,
    methods: tuple[str, ...] = ("sae_guided",),
    resume: bool = False,
) -> dict:
    """The whole chain; writes metrics.json, report.md, plots, config, model. ``resume`` continues a
    killed run in ``out`` from its last checkpoint (same config: same result)."""
    return _run(cfg, out, methods, overwrite, progress, resume, save_models=True)


def run_sweeps(ws: Workspace, methods: tuple[str, ...], progress: bool = True) -> dict[str, list[dict]]:
    """Forget/retain recall of each method at each value of its main hyperparameter: the curves of ``compare``'s
    tuning trials (``tune_method``), for scripts that want only those."""
    curves = {}
    for name in methods:
        model, outcome, _, record, others = tune_method(ws, name, progress)
        chosen = curve_point(ws, model, outcome, record["setting"], record["chosen"])
        curves[name] = complete_curve(others, record, chosen)
    return curves


def run_compare(
    cfg: DemoConfig,
    out: Path,
    overwrite: bool = False,
    progress: bool = True,
    methods: tuple[str, ...] = ALL_METHODS,
    save_models: bool = False,
    sweep: bool = True,
    resume: bool = False,
    seeds: int | None = None,
    tune: bool = False,
    settings: dict | None = None,
) -> dict:
    """Every method on the same world, split, budget and evaluation: compare.json, compare.md, a plot; with
    ``seeds``, that comparison over so many draws (``_compare_over_seeds``). ``sweep`` (the default) gives every
    method the equal tuning budget and a curve over its grid; ``sweep=False`` runs each at its configured values.
    ``tune=True`` is the old name of the sweep and turns it on. ``settings`` (``stages.tuning.settings_from``: the
    values a development comparison chose) runs each method at its chosen value instead, with no sweep."""
    sweep = (sweep or tune) and settings is None
    if settings is not None:
        cfg = with_settings(cfg, settings["chosen"])
        if settings.get("seed") == cfg.seed:
            log.warning(
                "--settings-from: those values were chosen on this very draw (seed %s); report on other seeds",
                cfg.seed,
            )
    if seeds is None:
        return _run(cfg, out, methods, overwrite, progress, resume, save_models, True, sweep, settings)

    def one_draw(drawn: DemoConfig, sub: Path, again: bool) -> dict:
        return _run(drawn, sub, methods, False, progress, again, save_models, True, sweep, settings)

    return _compare_over_seeds(cfg, out, seeds, methods, overwrite, resume, one_draw)


def _compare_over_seeds(
    cfg: DemoConfig,
    out: Path,
    n_seeds: int,
    methods: tuple[str, ...],
    overwrite: bool,
    resume: bool,
    one_draw: Callable[[DemoConfig, Path, bool], dict],
) -> dict:
    """``compare`` over ``n_seeds`` draws: seeds ``cfg.seed`` .. + N-1 for the targets and the split (and the
    synthetic world's own seed moved alike, unless targets are named), each in ``out/seed-<S>/``; then
    compare_seeds.json/.md with each metric's mean, spread and 95 % bootstrap interval. ``resume`` keeps finished
    draws and resumes the next."""
    from sae_unlearn.report.intervals import seed_summary, write_seed_summary

    if n_seeds < 2:
        raise UserInputError(
            f"--seeds {n_seeds}: an interval needs at least 2 draws; leave --seeds out for one comparison."
        )
    for name in methods:
        get_method(name)  # fail on a bad name before any compute
    out = Path(out)
    if not (resume and out.is_dir()):
        out = parallel.main_only(lambda: prepare_output_dir(out, overwrite))
    seeds, records = [], []
    for k in range(n_seeds):
        # named targets stay the targets: only the split moves (another world would not hold those names)
        world_seed = cfg.world.seed + (0 if cfg.unlearn.forget else k)
        drawn = cfg.model_copy(
            update={"seed": cfg.seed + k, "world": cfg.world.model_copy(update={"seed": world_seed})}
        )
        sub = out / f"seed-{drawn.seed}"
        if resume and (sub / "compare.json").is_file():  # this draw finished before the interruption
            metrics = json.loads((sub / "compare.json").read_text())
        else:
            metrics = one_draw(drawn, sub, resume and sub.is_dir())
        seeds.append(drawn.seed)
        records.append(metrics["methods"])
    summary = seed_summary(records)
    return parallel.main_only(partial(write_seed_summary, out, seeds, summary, "`seed-<S>/`", {}))


def _run(
    cfg: DemoConfig,
    out: Path,
    methods: tuple[str, ...],
    overwrite: bool,
    progress: bool,
    resume: bool,
    save_models: bool,
    compare: bool = False,
    sweep: bool = False,
    settings: dict | None = None,
) -> dict:
    """The one driver: stages 1-4 once, each method from the original weights (checkpointed under ``out``), then
    the outputs, written by one process under a launcher; ``compare`` adds compare.json/.md and the trade-off plot."""
    progress = progress and parallel.is_main()  # one set of progress bars under a launcher
    for name in methods:
        get_method(name)  # fail on a bad name before any compute
    if cfg.sae.path is not None or cfg.sae.release is not None:  # a mistyped SAE fails before the model loads
        check_sae_source(cfg.sae.path or cfg.sae.release or "", cfg.sae.sae_id)
    out = check_resumable(cfg, out, methods, overwrite, resume, sweep)
    ws, baseline = prepare_workspace(cfg, progress, saved=out / CHECKPOINTS)
    tuning: dict[str, dict] | None = {} if sweep else None
    sweeps: dict[str, list[dict]] | None = {} if sweep else None
    failed: dict[str, str] | None = {} if compare else None
    results, edited = run_methods(ws, baseline, methods, progress, out, resume, tuning, sweeps, failed)
    if failed and not results:
        raise UserInputError("No method ran: " + "; ".join(_failure(name, why) for name, why in failed.items()))

    def write() -> dict:
        preface = _write_comparison(out, results, sweeps, tuning, settings, failed) if compare else ""
        metrics = write_run_outputs(out, ws, results, edited, preface=preface)
        if compare:
            if failed:
                metrics["failed"] = failed
            if sweeps:
                metrics["sweeps"] = sweeps
            if tuning:
                metrics["tuning"] = tuning
            if settings:
                metrics["settings_from"] = settings
            atomic_write_json(out / "compare.json", metrics)
        if save_models:
            save_edited(out, ws, results, edited)
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)  # every output is in place: nothing left to resume
        return metrics

    return parallel.main_only(write)


def _failure(name: str, why: str) -> str:
    """A method's failure as one line that names it once (most messages already start with the name)."""
    return why if why.startswith(f"{name}:") else f"{name}: {why}"


def _write_comparison(
    out: Path,
    results: dict,
    sweeps: dict[str, list[dict]] | None,
    tuning: dict[str, dict] | None = None,
    settings: dict | None = None,
    failed: dict[str, str] | None = None,
) -> str:
    """compare.md and the trade-off plot (and the chosen settings, when tuned, and the methods that could not run,
    with why); returns the table, which also opens the report."""
    from sae_unlearn.report.compare import compare_table, tradeoff_plot

    methods_metrics = {name: m for name, (m, _) in results.items()}
    (out / "plots").mkdir(exist_ok=True)
    tradeoff_plot(methods_metrics, out / "plots" / "tradeoff.png", sweeps)
    table = "## Comparison\n\n" + compare_table(methods_metrics) + "\n\n![trade-off](plots/tradeoff.png)\n"
    if tuning:
        table += "\n" + tuning_table(tuning)
    if settings:
        table += "\n" + settings_note(settings)
    if failed:
        table += "\n**Did not run** (no row above):\n\n" + "".join(
            f"- {_failure(n, why)}\n" for n, why in failed.items()
        )
    atomic_write_text(out / "compare.md", "# sae-unlearn comparison\n\n" + table)
    return table
