"""The metric registry (metrics/registry.py) is the one list of what a run reports: every key a run writes is
declared there, the report and the comparison read their rows from it, and a metric joins by adding one module."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sae_unlearn
from sae_unlearn.metrics.registry import REGISTRY, Metric, describe, register, section_rows
from sae_unlearn.report.compare import COLUMNS
from sae_unlearn.runs import ALL_METHODS


def test_every_key_a_run_writes_is_in_the_registry(micro_compare_dir):
    methods = json.loads((micro_compare_dir / "compare.json").read_text())["methods"]
    assert list(methods) == list(ALL_METHODS)
    undeclared = sorted({key for record in methods.values() for key in record if describe(key) is None})
    assert not undeclared, f"keys written but not declared in the metric registry: {undeclared}"


def test_report_and_compare_show_what_the_registry_declares(micro_compare_dir):
    """Each shown metric's label is in report.md (with its floor right after it), and compare.md's columns are the
    registry's compare columns the run has."""
    methods = json.loads((micro_compare_dir / "compare.json").read_text())["methods"]
    report = (micro_compare_dir / "report.md").read_text()
    rows = section_rows(list(methods.values()), "headline") + section_rows(list(methods.values()), "attacks")
    assert len(rows) > 20
    for _, label in rows:
        assert f"| {label} |" in report, label
    forget = [label for key, label in rows].index("forget recall (held-out phrasings), after")
    assert rows[forget + 1][0] == "unknown_recall_same_prompts", "a metric's like-for-like floor follows it"
    header = next(
        line for line in (micro_compare_dir / "compare.md").read_text().splitlines() if line.startswith("| method")
    )
    shown = [c.strip() for c in header.strip("|").split("|")][1:]
    assert shown == [c for c in COLUMNS if any(c in m for m in methods.values())]
    assert "forget_mink_auc_after" in shown


def test_membership_scores_tell_known_facts_from_unknown_names(micro_compare_dir):
    """LOSS, Zlib, Min-K% and Min-K%++ (added as one module): on the original model the targets' facts score above
    the same sentences with never-seen names, so each AUC starts well above chance; every method gets them."""
    methods = json.loads((micro_compare_dir / "compare.json").read_text())["methods"]
    for score in ("loss", "zlib", "mink", "minkpp"):
        for name, record in methods.items():
            assert 0.0 <= record[f"forget_{score}_auc_after"] <= 1.0, (name, score)
        assert methods["sae_guided"][f"forget_{score}_auc_before"] >= 0.7, score


def test_min_k_plus_plus_is_the_standardised_token_log_probability(micro_workspace):
    """Min-K%++ by its definition, computed the slow way for one sentence: each token after the name, its
    log-probability minus the mean log-probability under the model's next-token distribution, over that
    distribution's standard deviation; the mean of the lowest 20 % (here: the single lowest of <= 5 tokens)."""
    import torch

    from sae_unlearn.evaluation.membership import membership_scores

    ws = micro_workspace
    entity = ws.split.forget[0]
    fact = next(f for f in entity.facts if not f.heldout)
    text = f"{fact.prompt} {fact.answer}"
    got = membership_scores(ws.model, ws.tokenizer, [text], [entity.name])
    ids = ws.tokenizer(text, return_tensors="pt")["input_ids"]
    name_ids = ws.tokenizer(text[: text.rfind(entity.name) + len(entity.name)])["input_ids"]
    with torch.no_grad():
        logits = ws.model(input_ids=ids).logits[0].float()
    per_token, log_probs = [], []
    for pos in range(len(name_ids), ids.shape[1]):  # token ``pos`` given everything before it
        dist = torch.log_softmax(logits[pos - 1], -1)
        mu = float((dist.exp() * dist).sum())
        sigma = float((dist.exp() * (dist - mu) ** 2).sum().sqrt())
        per_token.append((float(dist[ids[0, pos]]) - mu) / sigma)
        log_probs.append(float(dist[ids[0, pos]]))
    assert 1 <= len(per_token) <= 5
    assert got["forget_minkpp_auc"][0] == pytest.approx(min(per_token), abs=1e-4)
    assert got["forget_mink_auc"][0] == pytest.approx(min(log_probs), abs=1e-4)
    assert got["forget_loss_auc"][0] == pytest.approx(sum(log_probs) / len(log_probs), abs=1e-4)


def test_a_metric_lives_in_one_file():
    """Adding Min-K% touched one module: no other source file names its key (the registry carries it)."""
    package = Path(sae_unlearn.__file__).parent
    naming = sorted(
        p.relative_to(package).as_posix() for p in package.rglob("*.py") if "forget_mink_auc" in p.read_text()
    )
    assert naming == ["evaluation/membership.py"]


def test_registering_a_key_twice_is_refused():
    with pytest.raises(ValueError, match="registered twice"):
        register(Metric("forget_recall", "again"))
    assert REGISTRY["forget_recall"].label == "forget recall (held-out phrasings)"


def test_per_phrasing_keys_resolve_to_their_metric():
    metric, form = describe("forget_recall_form_question_after")
    assert metric.key == "forget_recall_form_{form}" and form == "question"
    floor, form = describe("unknown_recall_same_prompts_form_passing")
    assert floor.scope == "floor" and form == "passing"
    assert describe("steps_after") is None, "a method's bookkeeping has no before/after"
