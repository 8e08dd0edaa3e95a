"""The whole chain on a micro world through the CLI, as a user runs it (well under 3 minutes)."""

import hashlib
import json

from typer.testing import CliRunner

from sae_unlearn.cli import app

REQUIRED = [
    "forget_recall_before",
    "forget_recall_after",
    "retain_recall_before",
    "retain_recall_after",
    "unknown_recall",
    "forget_classified_unknown_after",
    "perplexity_before",
    "perplexity_after",
    "seconds",
]


def _tree_digest(path):
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_demo_end_to_end_on_micro_world(micro_config_file, micro_workspace, tmp_path):
    out = tmp_path / "run"
    source_digest = _tree_digest(micro_workspace.model_dir)
    result = CliRunner().invoke(
        app, ["demo", "--synthetic", "--out", str(out), "--config", str(micro_config_file), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    m = metrics["methods"]["sae_guided"]
    for key in REQUIRED:
        assert isinstance(m[key], (int, float)), key
    assert m["forget_recall_before"] >= 0.8
    assert m["forget_recall_after"] <= m["forget_recall_before"] - 0.25, m
    assert m["retain_recall_after"] >= m["retain_recall_before"] - 0.1, m
    assert (out / "report.md").read_text().count("![") >= 2
    quality = metrics["sae_quality"]  # the SAE the run used, read on the entities' last tokens
    assert 0 < quality["l0"] < 0.5 * micro_workspace.sae.cfg.d_sae and 0 < quality["alive_share"] <= 1, quality
    assert f"explained variance {quality['explained_variance']:.2f}" in (out / "report.md").read_text()
    assert (out / "plots" / "recall.png").stat().st_size > 1000
    assert (out / "model" / "config.json").exists() and (out / "config.yaml").exists()
    assert _tree_digest(micro_workspace.model_dir) == source_digest, "the source model was written to"

    again = CliRunner().invoke(
        app, ["demo", "--synthetic", "--out", str(out), "--config", str(micro_config_file), "--quiet"]
    )
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert json.loads((out / "metrics.json").read_text()) == metrics


def test_bad_layer_flag_fails_early_with_message(micro_config_file, micro_workspace, tmp_path):
    result = CliRunner().invoke(
        app, ["demo", "--synthetic", "--out", str(tmp_path / "x"), "--config", str(micro_config_file), "--layer", "9"]
    )
    assert result.exit_code == 2
    assert "Layer 9 is out of range" in result.output


def test_unknown_forget_name_is_reported(micro_config_file, micro_workspace, tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "demo",
            "--synthetic",
            "--out",
            str(tmp_path / "y"),
            "--config",
            str(micro_config_file),
            "--forget",
            "Nobody Atall",
        ],
    )
    assert result.exit_code == 2
    assert "['Nobody Atall'] are not in the entity set" in result.output
