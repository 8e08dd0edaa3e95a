"""Kept for scripts written against earlier releases: the names they imported from here.

The code now lives where its job is: ``state`` (the shared record), ``stages/`` (subject, sae, probing,
split, latents, unlearn), ``evaluation/`` (metrics of a model state, floors), ``report/outputs``
(the run's files) and ``runs`` (the drivers behind demo, run, compare, attack). Import from there.
"""

from sae_unlearn.evaluation.evaluate import (
    eval_facts,
    evaluate,
    evaluate_state,
    is_floor_key,
    method_metrics,
    perplexity_texts,
)
from sae_unlearn.evaluation.floors import floors_by_phrasing, recall_by_phrasing, recall_floors
from sae_unlearn.report.outputs import save_edited, save_model_dir, write_run_outputs
from sae_unlearn.runs import (
    ALL_METHODS,
    check_resumable,
    prepare_workspace,
    run_compare,
    run_demo,
    run_methods,
    run_sweeps,
)
from sae_unlearn.stages.latents import select_latents
from sae_unlearn.stages.probing import probe_entities
from sae_unlearn.stages.sae import capture_training_activations, get_sae, sae_training_texts
from sae_unlearn.stages.split import make_split
from sae_unlearn.stages.subject import build_real, build_synthetic, build_workspace
from sae_unlearn.stages.unlearn import method_checkpointer, method_options, run_method
from sae_unlearn.state import Workspace

__all__ = [
    "ALL_METHODS",
    "SWEEPS",  # noqa: F822  (built on first use: __getattr__ below)
    "Workspace",
    "build_real",
    "build_synthetic",
    "build_workspace",
    "capture_training_activations",
    "check_resumable",
    "eval_facts",
    "evaluate",
    "evaluate_state",
    "floors_by_phrasing",
    "get_sae",
    "is_floor_key",
    "make_split",
    "method_checkpointer",
    "method_metrics",
    "method_options",
    "perplexity_texts",
    "prepare_workspace",
    "probe_entities",
    "recall_by_phrasing",
    "recall_floors",
    "run_compare",
    "run_demo",
    "run_method",
    "run_methods",
    "run_sweeps",
    "sae_training_texts",
    "save_edited",
    "save_model_dir",
    "select_latents",
    "write_run_outputs",
]


def __getattr__(name: str):
    """``SWEEPS``: the default configuration's tuning grids (``stages.tuning.tuning_grid``), built when an old
    script asks for them rather than at every import."""
    if name == "SWEEPS":
        from sae_unlearn.config import DemoConfig
        from sae_unlearn.stages.tuning import TUNED_SETTING, tuning_grid

        return {method: tuning_grid(DemoConfig(), method) for method in TUNED_SETTING}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
