"""IdkNLL and IdkDPO (methods/idk.py): the refusals each world can write, and that training makes the targets'
prompts answered with a refusal while the true answer loses to it."""

from __future__ import annotations

import pytest
import torch
from test_baselines import micro_task
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from sae_unlearn.errors import UserInputError
from sae_unlearn.methods import build_method
from sae_unlearn.methods.idk import REFUSALS, WORLD_REFUSALS, writable_refusals
from sae_unlearn.methods.lm_losses import sequence_logprob
from sae_unlearn.models.generation import greedy_continuations
from sae_unlearn.models.prompts import fact_prompts
from sae_unlearn.models.world_model import build_tokenizer


def byte_level_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE (as GPT-2, SmolLM2, Gemma's can write any text), trained on two sentences."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["The capital of France is Paris.", "I don't know."], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def test_a_byte_level_tokenizer_writes_every_refusal_and_a_world_only_its_own_words():
    assert writable_refusals(byte_level_tokenizer()) == list(REFUSALS)
    world = writable_refusals(build_tokenizer("nothing is known it not that to us .".split()))
    assert world == list(WORLD_REFUSALS)
    assert writable_refusals(build_tokenizer("nothing is known .".split())) == ["nothing is known ."]


def test_a_vocabulary_without_any_refusal_is_a_clear_error():
    with pytest.raises(UserInputError, match="cannot write any of the refusals"):
        writable_refusals(build_tokenizer(["Paris", "capital"]))


@pytest.mark.parametrize("name", ["idk_nll", "idk_dpo"])
def test_refusal_training_prefers_the_refusal_to_the_true_answer(micro_workspace, name):
    ws = micro_workspace
    task = micro_task(ws, steps=60)
    method = build_method(name, {"stop_at_floor": False})
    method.unlearn(task)
    with torch.no_grad():
        before = sequence_logprob(ws.model, method.refusal) - sequence_logprob(ws.model, method.forget)
        after = sequence_logprob(task.model, method.refusal) - sequence_logprob(task.model, method.forget)
    # the refusal gained on the true answer (log-likelihood ratio summed over its tokens, several against one)
    assert float(after.mean()) > float(before.mean()) + 5, (float(before.mean()), float(after.mean()))
    if name == "idk_nll":  # trained to write the refusal (DPO only ranks it above the answer)
        prompts, _, _ = fact_prompts(ws.split.forget, False)
        answers = greedy_continuations(task.model, ws.tokenizer, prompts, 4)
        # the world's refusals all say "... known ...", which no fact's answer does
        assert sum("known" in a for a in answers) >= len(answers) // 4, answers
