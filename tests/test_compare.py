"""`sae-unlearn compare`: every method, one table, one plot (micro world, tiny budget)."""

import json

from typer.testing import CliRunner

from sae_unlearn.cli import app
from sae_unlearn.pipeline import ALL_METHODS
from test_end_to_end import REQUIRED


def test_compare_writes_all_methods_table_and_plot(micro_compare_dir):
    out = micro_compare_dir
    data = json.loads((out / "compare.json").read_text())
    assert list(data["methods"]) == list(ALL_METHODS)
    for name, m in data["methods"].items():
        for key in REQUIRED:
            assert isinstance(m[key], (int, float)), (name, key)
    table = (out / "compare.md").read_text()
    assert all(f"| {name} |" in table for name in ALL_METHODS)
    assert "**" in table  # best values are marked
    assert (out / "plots" / "tradeoff.png").stat().st_size > 1000
    assert (out / "sae_clamp_inference_hook.json").exists()  # --save-models: the hook, and every trained model
    assert all((out / f"model_{name}" / "config.json").exists() for name in ALL_METHODS if name != "sae_clamp")


def test_compare_sweep_adds_curves(micro_config_file, micro_workspace, tmp_path):
    out = tmp_path / "sweep"
    result = CliRunner().invoke(app, ["compare", "--out", str(out), "--config", str(micro_config_file),
                                      "--methods", "sae_clamp", "--sweep", "--quiet"])
    assert result.exit_code == 0, result.output
    curve = json.loads((out / "compare.json").read_text())["sweeps"]["sae_clamp"]
    assert [p["multiplier"] for p in curve] == [5.0, 20.0, 80.0]
    assert all(0 <= p["forget_recall_after"] <= 1 for p in curve)
    assert not (out / "sae_clamp_inference_hook.json").exists()  # models only with --save-models


def test_compare_rejects_unknown_method_before_compute(tmp_path):
    result = CliRunner().invoke(app, ["compare", "--out", str(tmp_path / "z"), "--methods", "sae_guided,forgetful"])
    assert result.exit_code == 2
    assert "Unknown method 'forgetful'; known methods:" in result.output
    assert not (tmp_path / "z").exists()


def test_best_forget_recall_is_the_one_closest_to_the_unknown_level():
    """Recall below what unknown names get on the same prompts is suppression, not a better forgetting."""
    from sae_unlearn.report.compare import compare_table

    base = {"forget_recall_before": 1.0, "retain_recall_before": 1.0, "heldout_known_recall_before": 1.0,
            "unknown_recall": 0.06, "unknown_recall_same_prompts": 0.26, "perplexity_before": 50.0}
    table = compare_table({"muted": base | {"forget_recall_after": 0.0}, "like_unknown": base | {"forget_recall_after": 0.25}})
    assert "| like_unknown | **0.250** |" in table and "| muted | 0.000 |" in table
