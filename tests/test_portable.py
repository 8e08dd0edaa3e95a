"""Saved adapters travel: they name a base another machine can resolve, and ``load_unlearned`` rebuilds them."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from sae_unlearn import load_unlearned
from sae_unlearn.io_utils import cache_root
from sae_unlearn.methods.adapters import wrap_with_lora
from sae_unlearn.models.builtin import BUILTIN_MODELS, BuiltinModel
from sae_unlearn.models.loading import load_causal_lm
from sae_unlearn.models.world_model import build_tokenizer
from sae_unlearn.report.outputs import save_model_dir

WORDS = ["Alden", "Voss", "was", "born", "in", "Calmora", "Brevania", "lies"]


def _edited_adapter(base_dir):
    """A LoRA adapter over the model in ``base_dir`` whose weights moved (so it differs from its base)."""
    model, tokenizer = load_causal_lm(base_dir)
    wrapped = wrap_with_lora(model, [0, 1], rank=2, alpha=4.0, seed=0)
    with torch.no_grad():
        for name, p in wrapped.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    return wrapped.eval(), tokenizer


def _logits(model, tokenizer) -> torch.Tensor:
    batch = tokenizer(["Alden Voss was born in"], return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits


@pytest.fixture
def tiny_base(tmp_path):
    torch.manual_seed(0)
    tok = build_tokenizer(WORDS)
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=32, pad_token_id=0,
    )  # fmt: skip
    return AutoModelForCausalLM.from_config(cfg), tok


def test_adapter_over_a_builtin_names_the_hub_and_loads_anywhere(tiny_base, tmp_path, monkeypatch):
    model, tok = tiny_base
    builtin_dir = cache_root() / "builtin" / "tiny-builtin"  # as if converted once on this machine
    model.save_pretrained(builtin_dir)
    tok.save_pretrained(builtin_dir)
    monkeypatch.setitem(
        BUILTIN_MODELS, "tiny-builtin", BuiltinModel("x", "1", "x.gguf", "Tiny (test)", hub_id="org/tiny-upstream")
    )
    edited, tokenizer = _edited_adapter("tiny-builtin")
    saved = save_model_dir(edited, tokenizer, tmp_path / "run" / "model", base=("tiny-builtin", builtin_dir))

    adapter_config = json.loads((saved / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == "org/tiny-upstream", "no path of this machine's cache"
    assert str(cache_root()) not in (saved / "adapter_config.json").read_text()
    assert json.loads((saved / "base_model.json").read_text())["model"] == "tiny-builtin"

    elsewhere = shutil.copytree(saved, tmp_path / "another-machine" / "model")  # the run dir is gone
    shutil.rmtree(tmp_path / "run")
    loaded, loaded_tok = load_unlearned(elsewhere)
    assert torch.allclose(_logits(loaded, loaded_tok), _logits(edited, tokenizer), atol=1e-5)
    base_logits = _logits(load_causal_lm("tiny-builtin")[0], loaded_tok)
    assert not torch.allclose(_logits(loaded, loaded_tok), base_logits, atol=1e-3), "the adapter was not applied"


def test_adapter_over_a_local_model_names_the_directory_as_given(tiny_base, tmp_path):
    model, tok = tiny_base
    model.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    edited, tokenizer = _edited_adapter(tmp_path / "base")
    saved = save_model_dir(edited, tokenizer, tmp_path / "model", base=(str(tmp_path / "base"), tmp_path / "base"))
    record = json.loads((saved / "base_model.json").read_text())
    assert record == {"model": str(tmp_path / "base"), "builtin": False}
    loaded, loaded_tok = load_unlearned(saved)
    assert torch.allclose(_logits(loaded, loaded_tok), _logits(edited, tokenizer), atol=1e-5)


def test_load_unlearned_refuses_what_is_not_a_saved_model(tmp_path):
    from sae_unlearn.errors import UserInputError

    with pytest.raises(UserInputError, match="not a saved model.*adapter_config.json"):
        load_unlearned(tmp_path)
