"""benchmarks/variant_tradeoff.py reads the session results files that our issue notes quote: runs made with other
``--set`` settings must stay apart, and the draw's own keys must not split one variant into one row per draw."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "variant_tradeoff.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("variant_tradeoff", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(seed: int, retain_fraction: float, forget: float) -> dict:
    return {
        "set": {"seed": seed, "world.seed": seed, "unlearn.retain_fraction": retain_fraction},
        "before": {"forget": 1.0, "retain": 0.9, "heldout_known": 0.8},
        "same_prompt_floor": 0.1,
        "relearn_floors": {"relearn_recall_unknown": 0.2},
        "variants": [
            {
                "options": {},
                "steps": 400,
                "forget": forget,
                "retain": 0.9,
                "heldout_known": 0.6,
                "perplexity_change": 0.01,
                "relearn": 0.3,
                "unlearn_seconds": 10.0,
            }
        ],
    }


def test_runs_with_other_set_keys_are_other_variants_and_draw_keys_are_not(tmp_path):
    tradeoff = _load_script()
    results = {f"seed{s}": {"half": _run(s, 0.5, 0.15 + s / 100), "more": _run(s, 0.7, 0.25)} for s in (0, 1, 2)}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    summary = tradeoff.summarise([path], dev_seeds={0}, base={})
    assert len(summary) == 2  # one row per setting, not per draw
    labels = {json.loads(label)["unlearn.retain_fraction"]: s for label, s in summary.items()}
    assert set(labels) == {0.5, 0.7}
    assert all("seed" not in label and "world.seed" not in label for label in summary)
    half = labels[0.5]
    assert half["fresh_draws"] == [1, 2]  # the development draw is listed apart, not averaged
    assert abs(half["stats_over_fresh_draws"]["forget_over_floor"]["mean"] - 6.5) < 1e-9  # (6 + 7) / 2 points
    assert abs(half["draws"]["1"]["heldout_known_kept_pct"] - 75.0) < 1e-9
