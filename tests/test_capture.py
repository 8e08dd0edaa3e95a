"""Capture on tiny random models of the real architectures, loaded through the user's code path."""

import pytest
import torch
from transformers import AutoModelForCausalLM, Gemma2Config, GPT2Config, LlamaConfig

from sae_unlearn.entities.types import Entity, Fact
from sae_unlearn.errors import UserInputError
from sae_unlearn.methods.lm_losses import encode_fact_answers, sequence_logprob
from sae_unlearn.models.capture import capture_entity_activations, residual_and_last_logits
from sae_unlearn.models.layers import check_layer, decoder_layers
from sae_unlearn.models.loading import load_causal_lm
from sae_unlearn.models.prompts import encode_prompts
from sae_unlearn.models.world_model import build_tokenizer

WORDS = "Alden Voss Brisa Kestrel works as a the occupation of is painter".split()


def _config(arch: str, vocab: int):
    if arch == "gpt2":
        return GPT2Config(vocab_size=vocab, n_positions=32, n_embd=32, n_layer=3, n_head=2)
    common = dict(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=32,
        pad_token_id=0,
    )
    if arch == "llama":
        return LlamaConfig(**common)
    return Gemma2Config(**common, head_dim=16)


@pytest.fixture(params=["gpt2", "llama", "gemma2"])
def tiny_model_dir(request, tmp_path):
    torch.manual_seed(0)
    tok = build_tokenizer(WORDS)
    model = AutoModelForCausalLM.from_config(_config(request.param, len(tok)))
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    return tmp_path


def test_capture_matches_hidden_states_and_skips_upper_layers(tiny_model_dir):
    model, tok = load_causal_lm(tiny_model_dir)
    prompts = ["Alden Voss works as a", "the occupation of Brisa Kestrel is"]
    enc = encode_prompts(tok, prompts, ["Alden Voss", "Brisa Kestrel"])
    assert enc.entity_last.tolist() == [2, 5]  # [BOS] counts as position 0
    calls = []
    handle = decoder_layers(model)[2].register_forward_hook(lambda *a: calls.append(1))
    acts = capture_entity_activations(model, enc, layer=1)
    handle.remove()
    assert calls == [], "layers above the hooked one must not run"
    with torch.no_grad():
        ref = model(
            input_ids=enc.input_ids, attention_mask=enc.attention_mask, output_hidden_states=True
        ).hidden_states[2]
    expected = ref[torch.arange(2), enc.entity_last]
    torch.testing.assert_close(acts, expected, rtol=1e-4, atol=1e-5)


def test_prompts_sharing_the_words_up_to_the_entity_run_once_with_the_same_activations(tiny_model_dir):
    """Capture runs each distinct prefix up to the entity's last token once: rows that share it get
    the activation a full pass over their own prompt gives, in their own order; prefixes run shortest
    first (less padding), and the rows still get their own."""
    model, tok = load_causal_lm(tiny_model_dir)
    prompts = ["the occupation of Brisa Kestrel is", "Alden Voss works as a", "Alden Voss is a painter"]
    enc = encode_prompts(tok, prompts, ["Brisa Kestrel", "Alden Voss", "Alden Voss"])
    shapes: list[tuple[int, int]] = []
    handle = decoder_layers(model)[0].register_forward_pre_hook(lambda _m, args: shapes.append(args[0].shape[:2]))
    acts = capture_entity_activations(model, enc, layer=1, batch_size=1)
    handle.remove()
    assert len(shapes) == 2, "the two prompts that open with 'Alden Voss' share one prefix"
    assert shapes[0][1] < shapes[1][1], "the shorter prefix runs first"
    with torch.no_grad():
        ref = model(
            input_ids=enc.input_ids, attention_mask=enc.attention_mask, output_hidden_states=True
        ).hidden_states[2]
    torch.testing.assert_close(acts, ref[torch.arange(3), enc.entity_last], rtol=1e-4, atol=1e-5)


def test_answer_logprobs_and_last_logits_match_the_full_vocabulary_pass(tiny_model_dir):
    """The vocabulary projection fed only the positions a loss reads (``head_reads_only``) gives the
    numbers of the plain full pass, Gemma-2's soft-capped logits included, and leaves no hook behind."""
    model, tok = load_causal_lm(tiny_model_dir)
    alden = Entity("Alden Voss", "person", [Fact("Alden Voss works as a", "painter")])
    brisa = Entity("Brisa Kestrel", "person", [Fact("the occupation of Brisa Kestrel is", "painter")])
    batch = encode_fact_answers(tok, [alden, brisa], torch.device("cpu"))
    with torch.no_grad():
        full = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits.float()
        target = batch.labels[:, 1:]
        logp = torch.log_softmax(full[:, :-1], -1).gather(-1, target.clamp_min(0)[..., None])[..., 0]
        expected = (logp * (target != -100)).sum(-1)
        assert torch.allclose(sequence_logprob(model, batch), expected, atol=1e-4)
        last = batch.attention_mask.sum(1) - 1
        _, logits = residual_and_last_logits(model, batch.input_ids, batch.attention_mask, 1, last)
        assert torch.allclose(logits.float(), full[torch.arange(2), last], atol=1e-4)
    assert not model.get_output_embeddings()._forward_pre_hooks


def test_layer_out_of_range_is_a_clear_error(tiny_model_dir):
    model, _ = load_causal_lm(tiny_model_dir)
    with pytest.raises(UserInputError, match=r"Layer 7 is out of range: this model has 3 layers, so use 0\.\.2"):
        check_layer(model, 7)


def test_entity_missing_from_prompt_is_a_clear_error(tiny_model_dir):
    _, tok = load_causal_lm(tiny_model_dir)
    with pytest.raises(UserInputError, match="'Alden Voss' does not occur in its prompt"):
        encode_prompts(tok, ["Brisa Kestrel works as a"], ["Alden Voss"])


def test_loading_never_writes_to_the_source_dir(tiny_model_dir):
    before = {p: p.stat().st_mtime_ns for p in tiny_model_dir.iterdir()}
    model, _ = load_causal_lm(tiny_model_dir)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    assert {p: p.stat().st_mtime_ns for p in tiny_model_dir.iterdir()} == before


def test_batched_decoding_returns_each_prompt_its_own_continuation(micro_workspace):
    """Decoding batches prompts by length; every answer must still come back in the caller's order."""
    from sae_unlearn.models.generation import greedy_continuations

    ws = micro_workspace
    facts = [f for e in ws.split.forget + ws.split.retain for f in e.facts][:24]
    prompts = [("a b c d e " * (i % 5)) + f.prompt for i, f in enumerate(facts)]  # lengths interleaved
    one_by_one = [greedy_continuations(ws.model, ws.tokenizer, [p], 3)[0] for p in prompts]
    assert greedy_continuations(ws.model, ws.tokenizer, prompts, 3, batch_size=4) == one_by_one


def test_a_model_state_decodes_each_prompt_once_and_a_new_state_decodes_again(micro_workspace):
    """Inside ``reuse_greedy_continuations`` repeated prompts are not decoded again and come back
    unchanged; once the block ends, changed weights are decoded afresh (no stale answers)."""
    import copy

    from sae_unlearn.models.generation import greedy_continuations, reuse_greedy_continuations

    ws = micro_workspace
    model = copy.deepcopy(ws.model)
    prompts = [f.prompt for e in ws.split.forget for f in e.facts][:6]
    decoded: list[int] = []
    model.generate = (lambda g: lambda **kw: decoded.append(kw["input_ids"].shape[0]) or g(**kw))(model.generate)
    plain = greedy_continuations(model, ws.tokenizer, prompts, 3)
    decoded.clear()
    with reuse_greedy_continuations(model):
        first = greedy_continuations(model, ws.tokenizer, prompts + prompts[:2], 3)
        with reuse_greedy_continuations(model):  # a nested block shares the outer store
            again = greedy_continuations(model, ws.tokenizer, prompts[::-1], 3)
    assert sum(decoded) == len(set(prompts)), "each distinct prompt is decoded once per model state"
    assert first == plain + plain[:2] and again == plain[::-1]
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.0)  # another state: the same prompts must be decoded, not read back
    decoded.clear()
    assert greedy_continuations(model, ws.tokenizer, prompts, 3) != plain
    assert sum(decoded) == len(prompts)


def test_a_lora_adapter_folded_for_inference_gives_the_same_logits_and_unfolds_after(tiny_model_dir):
    """Evaluation folds a trained LoRA adapter into the weights (faster) and unfolds it after: the
    logits are the adapter's own, not the base model's, and the model handed back is unfolded again."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    from sae_unlearn.methods.adapters import merged_adapter, wrap_with_lora

    model, tok = load_causal_lm(tiny_model_dir)
    ids = tok(["Alden Voss works as a"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        base = model(input_ids=ids).logits
    wrapped = wrap_with_lora(model, [0, 1], rank=2, alpha=4.0)
    with torch.no_grad():
        for name, p in wrapped.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # a trained adapter: B is no longer zero
        unfolded = wrapped(input_ids=ids).logits
        with merged_adapter(wrapped):
            assert all(m.merged for m in wrapped.modules() if isinstance(m, BaseTunerLayer))
            folded = wrapped(input_ids=ids).logits
        again = wrapped(input_ids=ids).logits
    assert not torch.allclose(unfolded, base, atol=1e-3), "the adapter must change the outputs for this check"
    torch.testing.assert_close(folded, unfolded, rtol=1e-4, atol=1e-4)
    assert not any(m.merged for m in wrapped.modules() if isinstance(m, BaseTunerLayer))
    torch.testing.assert_close(again, unfolded, rtol=1e-4, atol=1e-4)
    plain, _ = load_causal_lm(tiny_model_dir)
    with torch.no_grad(), merged_adapter(plain):  # a model without an adapter runs as it is
        torch.testing.assert_close(plain(input_ids=ids).logits, base)
