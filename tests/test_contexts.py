"""Generic contexts in the SAE-guided losses (entities/contexts.py): the targets are moved, and the retained
entities kept, after lead-ins that ask no fact."""

from __future__ import annotations

import copy

import torch

from sae_unlearn.entities import phrasings
from sae_unlearn.entities.contexts import CONTEXTS, LEAD_INS, with_contexts, with_lead_ins
from sae_unlearn.entities.types import Entity, Fact
from sae_unlearn.methods.base import UnlearnTask
from sae_unlearn.methods.sae_guided import SAEGuidedConfig, SAEGuidedUnlearner


def _task(ws, model, steps):
    return UnlearnTask(
        model=model,
        tokenizer=ws.tokenizer,
        split=ws.split,
        layer=ws.layer,
        sae=ws.sae,
        known_latents=ws.scores.top_known(5),
        unknown_latents=ws.scores.top_unknown(5),
        steps=steps,
        progress=False,
    )


def test_contexts_are_answerless_training_facts_naming_the_entity():
    (entity,) = with_contexts([Entity("Ann Lee", "person", [Fact("Ann Lee works as a", "poet")])], 3)
    assert [f.prompt for f in entity.facts[1:]] == [c.replace("{e}", "Ann Lee") for c in CONTEXTS[:3]]
    assert all(f.answer == "" and not f.heldout for f in entity.facts[1:])
    assert with_contexts([entity], 0)[0] is entity


def test_lead_ins_ask_each_training_fact_again_deeper_in_a_sentence_no_evaluation_uses():
    ann = Entity(
        "Ann Lee",
        "person",
        [
            Fact("Ann Lee works as a", "poet", "{e} works as a"),
            Fact("The home of Ann Lee is", "Oslo"),
            Fact("Q: What does Ann Lee do? A:", "poet", heldout=True, phrasing="question"),
        ],
    )
    (entity,) = with_lead_ins([ann], 2)
    extra = entity.facts[3:]
    assert [f.prompt for f in extra] == [
        f"{LEAD_INS[0]} Ann Lee works as a",
        f"{LEAD_INS[1]} Ann Lee works as a",
        f"{LEAD_INS[0]} the home of Ann Lee is",
        f"{LEAD_INS[1]} the home of Ann Lee is",
    ]
    assert [f.answer for f in extra] == ["poet", "poet", "Oslo", "Oslo"] and not any(f.heldout for f in extra)
    assert extra[0].attribute == "{e} works as a", "a lead-in asks the same relation"
    assert not set(LEAD_INS) & set(phrasings._PASSING), "the evaluation's passing mentions must stay unseen"
    assert with_lead_ins([ann], 0)[0] is ann


def test_lead_in_rows_train_with_their_answers_on_both_sides(micro_workspace):
    """Lead-in rows are facts: retained ones feed the answer hinge with their own answer token."""
    ws = micro_workspace
    method = SAEGuidedUnlearner(SAEGuidedConfig(lr=5e-3, w_retain=3.0, w_answer=1.0, lead_ins=2, contexts=1))
    task = _task(ws, copy.deepcopy(ws.model), steps=0)
    method.prepare(task)
    n_forget = sum(not f.heldout for e in ws.split.forget for f in e.facts)
    n_retain = sum(not f.heldout for e in ws.split.retain for f in e.facts)
    assert len(method.forget) == 3 * n_forget + len(ws.split.forget)
    assert len(method.retain) == 3 * n_retain + len(ws.split.retain)
    assert int(method.retain_is_fact.sum()) == 3 * n_retain
    n_first = sum(not f.heldout for f in ws.split.retain[0].facts)
    tokens = method.retain_answer[method.retain_is_fact]
    # row 0 is the first entity's first fact; row n_first the same fact after the first lead-in
    assert int(tokens[0]) == int(tokens[n_first]) != 0, "a fact and its lead-in version share the answer token"


def _context_distance(method: SAEGuidedUnlearner, task: UnlearnTask, rows: torch.Tensor) -> float:
    """Mean squared distance of the SAE codes to the unknown reference over the given forget rows' positions."""
    with torch.no_grad():
        hidden, _ = method._forget_forward(task, method.forget)
        mask = method.forget.after_entity_mask()
        z = task.sae.encode(hidden[mask])
        owner = mask.nonzero()[:, 0]
        keep = torch.isin(owner, rows)
        return float((z[keep] - method.ref_unknown[keep]).pow(2).sum(-1).mean())


def test_contexts_join_both_losses_and_move_the_targets_there(micro_workspace):
    ws = micro_workspace
    n = 3
    model = copy.deepcopy(ws.model)
    method = SAEGuidedUnlearner(SAEGuidedConfig(lr=5e-3, w_retain=3.0, w_answer=1.0, contexts=n))
    task = _task(ws, model, steps=0)
    method.prepare(task)
    n_forget_facts = sum(not f.heldout for e in ws.split.forget for f in e.facts)
    n_retain_facts = sum(not f.heldout for e in ws.split.retain for f in e.facts)
    assert len(method.forget) == n_forget_facts + n * len(ws.split.forget)
    assert len(method.retain) == n_retain_facts + n * len(ws.split.retain)
    assert int(method.retain_is_fact.sum()) == n_retain_facts
    # context rows sit after each entity's facts; measure those
    per_entity = [sum(not f.heldout for f in e.facts) + n for e in ws.split.forget]
    ends = torch.tensor(per_entity).cumsum(0)
    context_rows = torch.cat([torch.arange(int(end) - n, int(end)) for end in ends])
    before = _context_distance(method, task, context_rows)
    method = SAEGuidedUnlearner(SAEGuidedConfig(lr=5e-3, w_retain=3.0, w_answer=1.0, contexts=n))
    task = _task(ws, model, steps=40)
    method.unlearn(task)
    after = _context_distance(method, task, context_rows)
    assert after < 0.5 * before, f"codes in the contexts: distance to unknown {before:.2f} -> {after:.2f}"
