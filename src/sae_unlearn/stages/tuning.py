"""The equal tuning budget (issue 23): every method, SAE-guided included, runs at each value of its main setting
and one published rule, read on the validation split only (entities/validation.py), picks the value.

Why: a comparison where one method was tuned at length and the others ran at defaults measures the tuning, not
the method. The rule: among the values whose targets are recalled on the validation split within ``MARGIN`` of
the same prompts with unknown names, the one that keeps the most of the retained entities' validation recall;
if no value forgets that far, the one that forgets most. Ties go to the earlier value in the grid. Nothing the
evaluation reports (held-out phrasings, held-out known entities, attacks) enters the choice.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml
from torch import nn

from sae_unlearn.config import DRAW_KEYS, RUN_PLACE_KEYS, DemoConfig, config_differences, dump_config
from sae_unlearn.errors import UserInputError
from sae_unlearn.io_utils import read_comparison
from sae_unlearn.methods import UnlearnOutcome, method_settings
from sae_unlearn.methods.checkpoint import Checkpointer
from sae_unlearn.metrics.entangled import split_entangled
from sae_unlearn.metrics.recall import recall
from sae_unlearn.stages.unlearn import (
    method_checkpointer,
    method_options,
    run_method,
    validation_forget_gap,
    validation_retain_recall,
)
from sae_unlearn.state import Workspace

# Each method's main setting. The values tried are its configured value (the default, or the user's config), a
# third of it and three times it: the same relative budget for every method, its own starting point in the middle.
TUNED_SETTING: dict[str, str] = {
    "sae_guided": "w_retain",
    "gradient_ascent": "lr",
    "grad_diff": "lr",
    "npo": "beta",
    "simnpo": "beta",
    "idk_nll": "lr",
    "idk_dpo": "beta",
    "rmu": "alpha",
    "sae_clamp": "multiplier",
}
SPREAD = (1 / 3, 1.0, 3.0)
MARGIN = 0.05  # as the baselines' stop rule (methods/options.FloorStopOptions.stop_margin)


@dataclass(frozen=True)
class Trial:
    """One value of the setting, scored on the validation split."""

    value: float
    forget_gap: float  # validation recall of the targets minus the same prompts with unknown names
    retain_recall: float  # the retained entities' validation recall
    steps_run: int
    seconds: float


def _rank(trial: Trial, margin: float) -> tuple[bool, float]:
    """The rule as one order: a value that forgets (within ``margin``) beats one that does not; among those that
    forget, more retained recall is better; among the others, a smaller gap."""
    forgets = trial.forget_gap <= margin
    return forgets, trial.retain_recall if forgets else -trial.forget_gap


def choose(trials: list[Trial], margin: float = MARGIN) -> int:
    """Index of the trial the rule picks (module docstring); ties go to the earlier trial."""
    return max(range(len(trials)), key=lambda i: (_rank(trials[i], margin), -i))


def tuning_grid(cfg: DemoConfig, name: str) -> tuple[str, tuple[float, ...]]:
    """Method ``name``'s tuned setting and the values tried, around its value in ``cfg``."""
    if name not in TUNED_SETTING:
        raise UserInputError(
            f"Method {name!r} has no tuned setting: add it to stages/tuning.TUNED_SETTING, or run compare --no-sweep."
        )
    setting = TUNED_SETTING[name]
    value = float(getattr(method_settings(name, method_options(cfg, name)), setting))
    return setting, tuple(float(f"{value * f:.3g}") for f in SPREAD)


def trial_checkpointers(cfg: DemoConfig, name: str, out: Path, resume: bool) -> list[Checkpointer | None]:
    """Each trial's checkpoints, in grid order: what ``tune_method`` saves to and ``compare --resume`` verifies
    before any compute (one place names them)."""
    setting, values = tuning_grid(cfg, name)
    return [method_checkpointer(cfg, name, out, resume, {setting: value}) for value in values]


def curve_point(ws: Workspace, model: nn.Module, outcome: UnlearnOutcome, setting: str, value: float) -> dict:
    """One point of a method's curve on the trade-off plot: forget and retain recall on the evaluation's phrasings,
    as the table reports them. For the plot only: the choice never reads it."""
    assert ws.split is not None
    max_new = ws.cfg.eval.max_new_tokens
    retained = ws.scored(split_entangled(ws.split.retain, ws.split.forget)[0])
    with outcome.context(model):
        return {
            setting: value,
            "forget_recall_after": recall(model, ws.tokenizer, ws.split.forget, ws.eval_heldout, max_new),
            "retain_recall_after": recall(model, ws.tokenizer, retained, ws.eval_heldout, max_new),
        }


def complete_curve(others: list[dict], record: dict, metrics: dict) -> list[dict]:
    """The whole curve in grid order: the passed-over values' points (``tune_method``) and the chosen value's,
    taken from its evaluation (the same prompts ``curve_point`` reads): the curve passes through the table's row,
    and that point costs nothing."""
    setting = record["setting"]
    chosen = {setting: record["chosen"]} | {k: metrics[k] for k in ("forget_recall_after", "retain_recall_after")}
    return sorted([*others, chosen], key=lambda point: point[setting])


def tune_method(
    ws: Workspace, name: str, progress: bool = True, out: Path | None = None, resume: bool = False
) -> tuple[nn.Module, UnlearnOutcome, float, dict, list[dict]]:
    """Run ``name`` at each value of its grid; return the chosen run (model, outcome, seconds), the record
    compare.json keeps (``tuning``: setting, values, each trial's validation scores, the chosen value) and the
    other values' points of the method's curve (``sweeps``, for the plot; ``complete_curve`` adds the
    chosen one once it is evaluated). Only the best run so far is held, so a large model is never in memory
    more than twice; a run's curve point is measured when it leaves (on SmolLM2 a point costs ~15 s). With
    ``out``, each trial checkpoints as a method does (a finished trial is reloaded on ``resume``, not retrained)."""
    setting, values = tuning_grid(ws.cfg, name)
    trials: list[Trial] = []
    curve: dict[int, dict] = {}
    best: tuple[int, nn.Module, UnlearnOutcome, float] | None = None
    checkpointers = trial_checkpointers(ws.cfg, name, out, resume) if out is not None else [None] * len(values)
    for i, (value, ckpt) in enumerate(zip(values, checkpointers, strict=True)):
        t0 = time.time()
        model, outcome, seconds = run_method(ws, name, progress, {setting: value}, ckpt)
        with outcome.context(model):
            gap, kept = validation_forget_gap(ws, model), validation_retain_recall(ws, model)
        trials.append(Trial(value, gap, kept, outcome.steps_run, time.time() - t0))
        if choose(trials) == i:  # the new best: the previous one (if any) leaves
            leaving, best = (best[:3] if best else None), (i, model, outcome, seconds)
        else:
            leaving = (i, model, outcome)
        if leaving is not None:  # a run the rule passed over: its point now, then it goes
            j, gone, gone_outcome = leaving
            curve[j] = curve_point(ws, gone, gone_outcome, setting, values[j])
        del model, leaving
    assert best is not None
    record = {"setting": setting, "chosen": values[choose(trials)], "trials": [asdict(t) for t in trials]}
    return best[1], best[2], best[3], record | {"margin": MARGIN}, [curve[j] for j in sorted(curve)]


def settings_from(path: Path, methods: tuple[str, ...], cfg: DemoConfig | None = None) -> dict:
    """What a development comparison chose (its compare.json's ``tuning``), for ``compare --settings-from``: the
    confirmation draws run each method at the value chosen on the development draw, without a sweep of their own
    (choose on one draw, report on others; a third of the sweep's time). Returns ``{"source", "seed", "chosen":
    {method: {setting: value}}}``; a file that cannot serve every method in ``methods`` is refused before any
    compute, saying what to do; so is one whose configuration differs from ``cfg`` in more than the draw and the
    method settings (values chosen for another model or budget do not transfer)."""
    file, data, dev_config = read_comparison(path, "--settings-from")
    tuning = data.get("tuning")
    if not tuning:
        raise UserInputError(
            f"--settings-from {file}: that comparison chose no settings (it ran with --no-sweep or another "
            "--settings-from); give a comparison that ran the sweep (the default)."
        )
    if cfg is not None and dev_config is not None:
        ignored = DRAW_KEYS + RUN_PLACE_KEYS + ("unlearn.method", "unlearn.methods", "unlearn.method_options")
        differ = config_differences(dev_config, yaml.safe_load(dump_config(cfg)), ignored)
        if differ:
            raise UserInputError(
                f"--settings-from {file}: that comparison ran another configuration ({'; '.join(differ[:6])}); values "
                "chosen there do not transfer. Give the same model, entities, budget and options as the development run."
            )
    missing = [name for name in methods if name not in tuning]
    if missing:
        raise UserInputError(
            f"--settings-from {file} chose no setting for {', '.join(missing)}: run the development comparison with "
            f"them, or leave them out with --methods (it has {', '.join(tuning)})."
        )
    chosen = {name: {tuning[name]["setting"]: float(tuning[name]["chosen"])} for name in methods}
    return {"source": str(file), "seed": data.get("seed"), "chosen": chosen}


def with_settings(cfg: DemoConfig, chosen: dict[str, dict[str, float]]) -> DemoConfig:
    """``cfg`` with each method's chosen value written into its ``unlearn.methods.<name>`` block (what the run's
    config.yaml then records, and what its checkpoints are tied to)."""
    blocks = {name: dict(block) for name, block in cfg.unlearn.methods.items()}
    for name, values in chosen.items():
        blocks[name] = blocks.get(name, {}) | values
    return cfg.model_copy(update={"unlearn": cfg.unlearn.model_copy(update={"methods": blocks})})


def settings_note(settings: dict) -> str:
    """compare.md's record of where the settings came from, in place of the chosen-settings table."""
    values = "; ".join(
        f"{name} `{setting}` **{value:g}**"
        for name, pair in settings["chosen"].items()
        for setting, value in pair.items()
    )
    seed = f" (seed {settings['seed']})" if settings.get("seed") is not None else ""
    return (
        "## Settings chosen on a development draw\n\n"
        f"No sweep on this draw: each method ran at the value its sweep chose in `{settings['source']}`{seed}, by the "
        f"same validation rule: {values}.\n"
    )


def tuning_table(records: dict[str, dict]) -> str:
    """compare.md's "chosen settings": per method the setting, each value's validation scores, the choice."""
    lines = [
        "## Chosen settings (equal tuning budget, validation split only)",
        "",
        f"Each method ran at each value; chosen: the value whose targets' validation recall is within {MARGIN:.2f} "
        "of unknown names on the same prompts and that keeps the most retained validation recall (else the value "
        "that forgets most). Cells: validation forget gap / retained validation recall / steps.",
        "",
        "| method | setting | trials | chosen |",
        "|---|---|---|---|",
    ]
    for name, rec in records.items():
        trials = "; ".join(
            f"{t['value']:g}: {t['forget_gap']:+.3f} / {t['retain_recall']:.3f} / {t['steps_run']}"
            for t in rec["trials"]
        )
        lines.append(f"| {name} | `{rec['setting']}` | {trials} | **{rec['chosen']:g}** |")
    return "\n".join(lines) + "\n"
