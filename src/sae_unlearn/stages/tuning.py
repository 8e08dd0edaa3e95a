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

from torch import nn

from sae_unlearn.methods import UnlearnOutcome
from sae_unlearn.stages.unlearn import run_method, validation_forget_gap, validation_retain_recall
from sae_unlearn.state import Workspace

# Each method's main setting and the values tried (its default in the middle): 3 runs per method.
TUNING_GRID: dict[str, tuple[str, tuple[float, ...]]] = {
    "sae_guided": ("w_retain", (10.0, 30.0, 100.0)),
    "gradient_ascent": ("lr", (3e-5, 1e-4, 3e-4)),
    "grad_diff": ("lr", (3e-5, 1e-4, 3e-4)),
    "npo": ("beta", (0.05, 0.1, 0.5)),
    "simnpo": ("beta", (2.5, 4.5, 8.0)),
    "idk_nll": ("lr", (3e-5, 1e-4, 3e-4)),
    "idk_dpo": ("beta", (0.05, 0.1, 0.5)),
    "rmu": ("alpha", (10.0, 100.0, 1200.0)),
    "sae_clamp": ("multiplier", (5.0, 20.0, 80.0)),
}
MARGIN = 0.05  # as the baselines' stop rule (methods/options.FloorStopOptions.stop_margin)


@dataclass(frozen=True)
class Trial:
    """One value of the setting, scored on the validation split."""

    value: float
    forget_gap: float  # validation recall of the targets minus the same prompts with unknown names
    retain_recall: float  # the retained entities' validation recall
    steps_run: int
    seconds: float


def choose(trials: list[Trial], margin: float = MARGIN) -> int:
    """Index of the trial the rule picks (module docstring)."""
    forgotten = [i for i, t in enumerate(trials) if t.forget_gap <= margin]
    if forgotten:
        return max(forgotten, key=lambda i: (trials[i].retain_recall, -i))
    return min(range(len(trials)), key=lambda i: (trials[i].forget_gap, i))


def tune_method(ws: Workspace, name: str, progress: bool = True) -> tuple[nn.Module, UnlearnOutcome, float, dict]:
    """Run ``name`` at each value of its grid; return the chosen run (model, outcome, seconds) and the record
    compare.json keeps (``tuning``: setting, values, each trial's validation scores, the chosen value)."""
    setting, values = TUNING_GRID[name]
    runs, trials = [], []
    for value in values:
        t0 = time.time()
        model, outcome, seconds = run_method(ws, name, progress, {setting: value})
        with outcome.context(model):
            gap, kept = validation_forget_gap(ws, model), validation_retain_recall(ws, model)
        trials.append(Trial(value, gap, kept, outcome.steps_run, time.time() - t0))
        runs.append((model, outcome, seconds))
    best = choose(trials)
    record = {"setting": setting, "chosen": values[best], "trials": [asdict(t) for t in trials], "margin": MARGIN}
    chosen = runs[best]
    runs.clear()  # the other trials' models go (at most one per value is held until the choice)
    return (*chosen, record)


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
