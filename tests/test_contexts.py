"""Generic contexts in the SAE-guided losses (entities/contexts.py): the targets are moved, and the retained
entities kept, after lead-ins that ask no fact."""

from __future__ import annotations

import copy
import random

import torch
from test_refusal_baselines import byte_level_tokenizer

from sae_unlearn.entities import phrasings
from sae_unlearn.entities.contexts import (
    CONTEXTS,
    LEAD_INS,
    QUESTION_FRAMES,
    WORLD_LEAD_INS,
    lead_ins_for,
    with_contexts,
    with_lead_ins,
    with_question_frames,
)
from sae_unlearn.entities.synthetic import HELDOUT_PREFIXES, build_world
from sae_unlearn.entities.types import Entity, Fact
from sae_unlearn.methods import sae_guided
from sae_unlearn.methods.base import UnlearnTask
from sae_unlearn.methods.sae_guided import SAEGuidedConfig, SAEGuidedUnlearner
from sae_unlearn.models.prompts import EncodedPrompts
from sae_unlearn.models.world_model import build_tokenizer


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


def _bigrams(text: str) -> set[tuple[str, str]]:
    words = text.split()
    return set(zip(words, words[1:], strict=False))


def test_lead_ins_follow_the_models_vocabulary_and_stay_apart_from_the_evaluation_and_validation():
    """A word-level vocabulary gets the world's openings, not ``[UNK]`` tokens; none shares two words in a row with a
    held-out opening."""
    world = build_world(seed=0, n_known=4, n_obscure=4, n_unknown=2)
    tok = build_tokenizer(world.all_words)
    assert lead_ins_for(tok) == WORLD_LEAD_INS
    assert lead_ins_for(byte_level_tokenizer()) == LEAD_INS
    (entity,) = with_lead_ins(world.known[:1], 6, lead_ins_for(tok))  # more than the world has: all of them
    extra = [f for f in entity.facts if f.phrasing == "lead_in"]
    assert len(extra) == len(WORLD_LEAD_INS) * sum(not f.heldout for f in world.known[0].facts)
    for fact in extra:
        assert tok.unk_token_id not in tok(fact.prompt)["input_ids"], fact.prompt
    for lead in WORLD_LEAD_INS:
        assert not any(_bigrams(lead) & _bigrams(held) for held in HELDOUT_PREFIXES), lead


def test_question_frames_ask_each_training_fact_as_a_question_no_evaluation_asks():
    ann = Entity(
        "Ann Lee",
        "person",
        [
            Fact("Ann Lee works as a", "poet", "{e} works as a"),
            Fact("Q: What does Ann Lee do? A:", "poet", heldout=True, phrasing="question"),
        ],
    )
    (entity,) = with_question_frames(with_lead_ins([ann], 1), 2)
    framed = [f for f in entity.facts if f.phrasing == "question_frame"]
    # the fact itself, not its lead-in copy nor the held-out question, is framed
    assert [f.prompt for f in framed] == [
        "Q: Ann Lee works as a what? A:",
        "Question: Ann Lee works as a what? Answer:",
    ]
    assert all(f.answer == "poet" and not f.heldout and f.attribute == "{e} works as a" for f in framed)
    evaluated = phrasings.question_prompt("Ann Lee", "Ann Lee works as a")
    assert not any(frame.split("{s}")[0] in evaluated for frame in QUESTION_FRAMES[1:])
    assert "what? A:" not in evaluated and not evaluated.startswith("Q: Ann Lee works as a what")
    assert with_question_frames([ann], 0)[0] is ann


def test_lead_in_rows_train_with_their_answers_on_both_sides(micro_workspace):
    """Lead-in rows are facts: retained ones feed the answer hinge with their own answer token."""
    ws = micro_workspace
    cfg = SAEGuidedConfig(lr=5e-3, w_retain=3.0, w_answer=1.0, lead_ins=2, question_frames=1, contexts=1)
    method = SAEGuidedUnlearner(cfg)
    task = _task(ws, copy.deepcopy(ws.model), steps=0)
    method.prepare(task)
    n_forget = sum(not f.heldout for e in ws.split.forget for f in e.facts)
    n_retain = sum(not f.heldout for e in ws.split.retain for f in e.facts)
    # each fact, after 2 lead-ins, in 1 question frame (the facts only, not their lead-in copies), + 1 context
    assert len(method.forget) == 4 * n_forget + len(ws.split.forget)
    assert len(method.retain) == 4 * n_retain + len(ws.split.retain)
    assert int(method.retain_is_fact.sum()) == 4 * n_retain
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
        unknown = method.forget_references(torch.arange(len(method.forget))).unknown
        return float((z[keep] - unknown[keep]).pow(2).sum(-1).mean())


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


def test_a_mixed_batch_is_cut_in_two_by_length_only_where_that_saves_padding():
    def prompts(lengths: list[int]) -> EncodedPrompts:
        n, width = len(lengths), max(lengths)
        return EncodedPrompts(
            torch.zeros(n, width, dtype=torch.long),
            torch.ones(n, width, dtype=torch.long),
            torch.zeros(n, dtype=torch.long),
            torch.tensor(lengths) - 1,
        )

    mixed = prompts([20, 5, 21, 6, 5, 20])
    assert [g.tolist() for g in mixed.length_groups(torch.arange(6))] == [[1, 4, 3], [0, 5, 2]]
    assert [g.tolist() for g in mixed.length_groups(torch.tensor([0, 2]))] == [[0, 2]]
    near = prompts([20, 19, 20, 18])  # cutting would save under a sixth
    assert [g.tolist() for g in near.length_groups(torch.arange(4))] == [[0, 1, 2, 3]]
    assert [b.tolist() for b in mixed.length_batches(4)] == [[1, 4, 3, 0], [5, 2]]


def test_lead_in_rows_run_in_length_groups_with_the_one_batch_loss_and_references(micro_workspace, monkeypatch):
    """The speed-ups for lead-ins (prepare's length batches, a step's length groups) change no number."""
    ws = micro_workspace
    cfg = SAEGuidedConfig(w_output=1.0, w_kl=1.0, w_answer=1.0, w_downstream=1.0, lead_ins=2, forget_batch=None)
    # lead-ins as long as the English ones, in the world's words (its own are 2-3 words: one length group)
    long_leads = ("we know that it is true that people say that", "it is said that as everyone knows , of course ,")
    monkeypatch.setattr(sae_guided, "lead_ins_for", lambda tokenizer: long_leads)
    method = SAEGuidedUnlearner(cfg)
    task = _task(ws, copy.deepcopy(ws.model), steps=0)
    method.prepare(task)
    rows = torch.arange(len(method.forget))
    assert len(method.forget.length_groups(rows)) == 2, "bare facts and lead-in rows differ in length"
    batched, batched_logp = method._forward_by_length(task, method.forget, with_next=True, batch_size=3)
    with torch.no_grad():
        whole, whole_logp = method._forget_forward(task, method.forget)
    real = method.forget.attention_mask.bool()
    torch.testing.assert_close(batched[real], whole[real], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(batched_logp, whole_logp, rtol=1e-4, atol=1e-4)
    one_template_at_a_time = SAEGuidedUnlearner(cfg)
    whole = SAEGuidedUnlearner._reference_codes
    monkeypatch.setattr(SAEGuidedUnlearner, "_reference_codes", lambda self, *a: whole(self, *a, keys_at_once=1))
    one_template_at_a_time.prepare(task)
    every_row = torch.arange(len(method.forget))
    apart, together = one_template_at_a_time.forget_references(every_row), method.forget_references(every_row)
    for name in ("unknown", "error", "known", "margin", "next_token", "hidden0"):
        torch.testing.assert_close(getattr(apart, name), getattr(together, name), rtol=1e-4, atol=1e-5, msg=name)
    grouped = method.loss_terms(task, random.Random(0))
    monkeypatch.setattr(EncodedPrompts, "length_groups", lambda self, rows: [rows])
    single = method.loss_terms(task, random.Random(0))
    assert grouped.keys() == single.keys()
    for key in grouped:
        torch.testing.assert_close(grouped[key], single[key], rtol=1e-4, atol=1e-6, msg=key)
