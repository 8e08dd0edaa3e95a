"""SAE-guided unlearning on a real pretrained model (SmolLM2-135M, built in, offline) with the demo's settings:
enough steps to forget two entities, and the rest of the model kept. Slow (about three minutes on 2 CPU cores);
`make test` runs it, `pytest -m "not slow"` leaves it out."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from sae_unlearn.cli import DEMO_REAL_CONFIG, app
from sae_unlearn.entities.real import bundled_entities_path, load_entity_file

ENTITIES = [
    "Paris",
    "Rome",
    "Madrid",
    "Berlin",
    "Tokyo",
    "Albert Einstein",
    "William Shakespeare",
    "Isaac Newton",
    "Charles Darwin",
    "Barack Obama",
    "London",
    "Abraham Lincoln",
]
TARGETS = ["Paris", "Albert Einstein"]


@pytest.mark.slow
def test_sae_guided_makes_smollm2_forget_two_entities_and_keep_the_others(tmp_path):
    pytest.importorskip("gguf")
    rows = [e.to_dict() for e in load_entity_file(bundled_entities_path()) if e.name in ENTITIES]
    (tmp_path / "entities.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = yaml.safe_load(DEMO_REAL_CONFIG.read_text())  # the shipped demo settings, on a smaller SAE and layer
    cfg |= {"layer": 6, "entities": {"n_fictional": 8}, "attack": {"enabled": False}}
    cfg["sae"] |= {"total_samples": 20000, "batch_size": 256, "generation_prompts": 16, "generation_tokens": 16}
    # 30 steps: every outcome below as at 60 (forget 0.000 on every phrasing, held-out known 0.750 -> 0.667,
    # perplexity 59.9 -> 56.7), in 80 s of unlearning instead of 163 (session 49; CI keeps under 20 minutes)
    cfg["unlearn"] |= {"steps": 30, "retain_fraction": 0.6}
    cfg["eval"] = {"known_threshold": 0.75}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--entities",
            str(tmp_path / "entities.jsonl"),
            "--config",
            str(tmp_path / "run.yaml"),
            "--forget",
            ",".join(TARGETS),
            "--out",
            str(out),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    m = json.loads((out / "metrics.json").read_text())["methods"]["sae_guided"]
    # on the prompts the loss trained on, the targets are recalled like unknown names in the same prompts
    assert m["forget_recall_train_phrasing_before"] >= 0.75, m
    assert m["forget_recall_train_phrasing_after"] <= m["unknown_recall_same_prompts_train_phrasing"] + 0.1, m
    # held-out phrasings (no loss saw them) lose recall too: the edit is not only about the trained sentences
    assert m["forget_recall_after"] <= m["forget_recall_before"] - 0.2, m
    # the targets now look like unknown entities to the probe, and the model is kept
    assert m["forget_classified_unknown_after"] >= 0.5, m
    assert m["retain_recall_after"] >= m["retain_recall_before"] - 0.05, m
    assert m["heldout_known_recall_after"] >= m["heldout_known_recall_before"] - 0.15, (
        m
    )  # one fact of ~8 (0.75 -> 0.67)
    assert m["perplexity_after"] <= 1.05 * m["perplexity_before"], m
    assert m["degenerate_rate_after"] <= 0.1, m
