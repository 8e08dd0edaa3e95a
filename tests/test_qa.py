"""`evaluate --qa FILE.jsonl`: free-form answers scored by ROUGE-L recall and containment (RWKU's and TOFU's
convention), before and after unlearning, with clear errors for a bad file."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from sae_unlearn.cli import app
from sae_unlearn.errors import UserInputError
from sae_unlearn.evaluation.qa import _scores, load_qa_file


def test_rouge_l_recall_and_containment_of_reference_answers():
    rouge, contains = _scores(
        ["Nairobi Kenya", "Paris", "the red fox"], ["the capital is Nairobi", "paris, of course", "the big red old fox"]
    )
    assert rouge[0] == pytest.approx(0.5)  # one of the reference's two words, in order
    assert rouge[1] == pytest.approx(1.0) and contains[1] == 1.0  # case-folded
    # every reference word in order, but not contiguous: full recall, no containment
    assert rouge[2] == pytest.approx(1.0) and contains[2] == 0.0
    assert contains[0] == 0.0


@pytest.mark.parametrize(
    "lines,message",
    [
        (['{"question": "Q?", "answer": "A"}', "not json"], r"line 2: not valid JSON"),
        (['{"question": "Q?"}'], r"line 1: \['answer'\] missing"),
        (['{"question": "Q?", "answer": "A", "entity": 3}'], r"line 1: \['entity'\] must be strings"),
        (["", "  "], r"has no items"),
    ],
)
def test_bad_qa_files_are_refused_with_the_line_and_the_form(tmp_path, lines, message):
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserInputError, match=message):
        load_qa_file(path)


def test_evaluate_qa_scores_the_targets_answers_before_and_after(micro_compare_dir, micro_workspace, tmp_path):
    """On SAE-guided's model from the micro comparison: the targets' answers are given before and gone after,
    paraphrased questions are scored apart, and every item's answers from both models are written."""
    ws = micro_workspace
    items = [
        {"question": f.prompt, "answer": f.answer, "entity": e.name}
        for e in ws.split.forget
        for f in e.facts
        if not f.heldout
    ]
    paraphrase = next(f for f in ws.split.forget[0].facts if f.heldout)
    items[0]["paraphrased_question"] = paraphrase.prompt
    items += [
        {"question": f.prompt, "answer": f.answer, "entity": e.name} for e in ws.split.retain[:2] for f in e.facts
    ]
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps(i) + "\n" for i in items))
    runner = CliRunner()
    args = ["evaluate", "--model", str(micro_compare_dir / "model_sae_guided")]
    args += ["--config", str(micro_compare_dir / "config.yaml"), "--qa", str(qa), "--qa-template", "{question}"]
    bad = runner.invoke(app, [*args[:-1], "Q: A:", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "no {question} slot" in bad.output and not (tmp_path / "bad").exists()
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    m = json.loads((tmp_path / "eval" / "metrics.json").read_text())["methods"]["evaluated"]
    assert m["qa_forget_contains_before"] >= 0.8  # the world model knows its targets' cloze facts
    assert m["qa_forget_contains_after"] <= m["qa_forget_contains_before"] - 0.5, m  # the edit removed them
    assert m["qa_forget_rougeL_recall_after"] < m["qa_forget_rougeL_recall_before"]
    assert {"qa_other_contains_after", "qa_paraphrased_forget_rougeL_recall_after"} <= set(m)
    rows = [json.loads(line) for line in (tmp_path / "eval" / "qa_answers.jsonl").read_text().splitlines()]
    assert len(rows) == len(items) and rows[0]["paraphrased_question"] == paraphrase.prompt
    forget_rows = [r for r in rows if r["entity"] in {e.name for e in ws.split.forget}]
    contains = sum(r["after"]["question_contains"] for r in forget_rows) / len(forget_rows)
    assert contains == pytest.approx(m["qa_forget_contains_after"])  # the summary is the mean of the rows
