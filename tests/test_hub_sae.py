"""Pretrained SAEs named by sae-lens release (the Gemma Scope path), without network.

A Gemma Scope 2 SAE for Gemma-3-270M is laid out in a Hugging Face cache exactly as a download leaves it
(``resid_post/layer_5_width_16k_l0_small/{config.json,params.safetensors}`` in the ``google/gemma-scope-2-270m-pt``
snapshot) and loaded through sae-lens' own Gemma-3 loader, offline. The one call sae-lens makes outside the hub
client (an HTTP range request for the parameter shapes) reads the cached file's header instead.
"""

from __future__ import annotations

import json

import pytest
import requests
import torch
from huggingface_hub import constants as hub_constants
from sae_lens.loading import pretrained_sae_loaders
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, Gemma3TextConfig
from typer.testing import CliRunner

from sae_unlearn.cli import app
from sae_unlearn.errors import UserInputError
from sae_unlearn.models.world_model import build_tokenizer
from sae_unlearn.sae.loading import check_sae_matches, load_sae
from tests.test_real_models import ENTITIES, WORDS, _run_config

RELEASE, SAE_ID = "gemma-scope-2-270m-pt-res", "layer_5_width_16k_l0_small"
REPO, FOLDER = "google/gemma-scope-2-270m-pt", "resid_post/layer_5_width_16k_l0_small"
WIDTH, LATENTS = 32, 64


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty Hugging Face cache, offline mode on, and the one raw HTTP call answered as an offline machine would."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)

    def no_network(repo_id: str, filename: str):
        raise requests.exceptions.ConnectionError(f"Failed to resolve 'huggingface.co' ({repo_id}/{filename})")

    monkeypatch.setattr(pretrained_sae_loaders, "get_safetensors_tensor_shapes", no_network)
    return cache


def _cache_gemma_scope_sae(cache, monkeypatch) -> dict[str, torch.Tensor]:
    """Write the SAE where ``hf_hub_download`` finds a finished download; shapes come from the cached header."""
    snapshot = cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / ("0" * 40)
    folder = snapshot / FOLDER
    folder.mkdir(parents=True)
    (cache / f"models--{REPO.replace('/', '--')}" / "refs").mkdir()
    (cache / f"models--{REPO.replace('/', '--')}" / "refs" / "main").write_text("0" * 40)
    raw_cfg = {
        "architecture": "jump_relu",
        "model_name": "gemma-v3-270m-pt",
        "hf_hook_point_in": "model.layers.5.output",
    }
    (folder / "config.json").write_text(json.dumps(raw_cfg))
    torch.manual_seed(0)
    params = {
        "w_enc": torch.randn(WIDTH, LATENTS) / WIDTH**0.5,
        "w_dec": torch.randn(LATENTS, WIDTH) / LATENTS**0.5,
        "b_enc": torch.zeros(LATENTS),
        "b_dec": torch.zeros(WIDTH),
        "threshold": torch.full((LATENTS,), 0.05),
    }
    save_file(params, str(folder / "params.safetensors"))

    def cached_shapes(repo_id: str, filename: str) -> dict[str, list[int]]:
        from safetensors import safe_open

        with safe_open(str(snapshot / filename), "pt") as f:
            return {k: list(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (safe_open has no iter)

    monkeypatch.setattr(pretrained_sae_loaders, "get_safetensors_tensor_shapes", cached_shapes)
    return params


def _tiny_gemma3(path):
    """Six blocks, so that the SAE's layer 5 exists; the built-in gemma3-270m's sliding/full attention pattern."""
    torch.manual_seed(0)
    tok = build_tokenizer(WORDS)
    cfg = Gemma3TextConfig(
        vocab_size=len(tok),
        hidden_size=WIDTH,
        intermediate_size=64,
        num_hidden_layers=6,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=64,
        sliding_window=4,
        layer_types=["sliding_attention"] * 5 + ["full_attention"],
        pad_token_id=0,
    )
    AutoModelForCausalLM.from_config(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_unlisted_release_or_id_is_refused_before_any_download(offline_hub):
    with pytest.raises(
        UserInputError, match="not a directory here nor a release.*Did you mean gemma-scope-2-270m-pt-res"
    ):
        load_sae("gemma-scope-2-270m-pt-rez", SAE_ID)
    with pytest.raises(UserInputError, match=r"has no SAE 'layer_5_width_16k'.*layer_5_width_16k_l0"):
        load_sae(RELEASE, "layer_5_width_16k")
    with pytest.raises(UserInputError, match="--sae RELEASE:ID"):
        load_sae(RELEASE)


def test_hub_sae_offline_says_it_cannot_be_fetched_and_how_to_train_one(offline_hub):
    with pytest.raises(UserInputError) as err:
        load_sae(RELEASE, SAE_ID)
    message = str(err.value)
    assert "could not be fetched" in message and "ConnectionError" in message
    assert "leave out --sae" in message and "trains an SAE on the model itself" in message
    assert f"SAE.from_pretrained('{RELEASE}', '{SAE_ID}').save_model('DIR')" in message


def test_run_with_a_cached_gemma_scope_sae_loads_it_as_sae_lens_does(offline_hub, monkeypatch, tmp_path):
    params = _cache_gemma_scope_sae(offline_hub, monkeypatch)
    sae = load_sae(RELEASE, SAE_ID)
    assert sae.cfg.metadata.hook_name == "blocks.5.hook_resid_post"
    torch.testing.assert_close(sae.W_enc.detach(), params["w_enc"])
    model_dir = _tiny_gemma3(tmp_path / "model")
    check_sae_matches(sae, AutoModelForCausalLM.from_pretrained(model_dir), layer=5)
    with pytest.raises(UserInputError, match="does not match layer 4"):
        check_sae_matches(sae, AutoModelForCausalLM.from_pretrained(model_dir), layer=4)
    entities = tmp_path / "entities.jsonl"
    entities.write_text("".join(json.dumps(e) + "\n" for e in ENTITIES))
    config = _run_config(tmp_path, w_downstream=0.0)
    out = tmp_path / "out"
    args = ["run", "--model", str(model_dir), "--sae", f"{RELEASE}:{SAE_ID}", "--layer", "5", "--entities"]
    args += [str(entities), "--forget", "Alden Voss,Port Tarvo", "--out", str(out), "--quiet", "--config", config]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["methods"]["sae_guided"]["steps"] == 3
    assert f"{RELEASE}:{SAE_ID}" in (out / "report.md").read_text()
