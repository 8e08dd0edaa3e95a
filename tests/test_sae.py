import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from sae_unlearn.errors import UserInputError
from sae_unlearn.sae.latents import separation_scores
from sae_unlearn.sae.loading import check_sae_matches, load_sae
from sae_unlearn.sae.training import save_sae, train_sae


@pytest.fixture(scope="module")
def tiny_sae_dir(tmp_path_factory):
    torch.manual_seed(0)
    # sparse combinations of 24 directions: the data an SAE is built for
    codes = torch.rand(8192, 24) * (torch.rand(8192, 24) < 0.1)
    acts = codes @ torch.randn(24, 16)
    sae = train_sae(
        acts, "blocks.1.hook_resid_post", "tiny", expansion=2, l1_coefficient=0.05, total_samples=60_000, batch_size=256
    )
    return save_sae(sae, tmp_path_factory.mktemp("sae") / "sae"), acts


def test_trained_sae_roundtrips_in_sae_lens_format_and_reconstructs(tiny_sae_dir):
    path, acts = tiny_sae_dir
    assert (path / "cfg.json").exists() and (path / "sae_weights.safetensors").exists()
    sae = load_sae(path)
    with torch.no_grad():
        recon = sae.decode(sae.encode(acts))
    fvu = (recon - acts).pow(2).sum() / (acts - acts.mean(0)).pow(2).sum()
    assert fvu < 0.5, f"SAE explains too little variance (FVU {fvu:.2f})"


def test_sae_width_and_hook_mismatch_are_refused(tiny_sae_dir):
    sae = load_sae(tiny_sae_dir[0])
    wide = GPT2LMHeadModel(GPT2Config(vocab_size=10, n_embd=32, n_layer=2, n_head=2))
    with pytest.raises(UserInputError, match="SAE input width 16 does not match the model's hidden size 32"):
        check_sae_matches(sae, wide, 1)
    right = GPT2LMHeadModel(GPT2Config(vocab_size=10, n_embd=16, n_layer=3, n_head=2))
    check_sae_matches(sae, right, 1)
    with pytest.raises(UserInputError, match="hook point 'blocks.1.hook_resid_post' does not match layer 2"):
        check_sae_matches(sae, right, 2)


def test_missing_sae_dir_content_is_explained(tmp_path):
    with pytest.raises(UserInputError, match="not an sae-lens SAE directory"):
        load_sae(tmp_path)


def test_separation_scores_rank_the_known_only_latent_first():
    z_known = torch.zeros(20, 4)
    z_unknown = torch.zeros(20, 4)
    z_known[:, 2] = 1.0  # fires on every known entity
    z_unknown[:, 1] = 1.0  # fires on every unknown entity
    z_known[:10, 3] = 1.0
    scores = separation_scores(z_known, z_unknown)
    assert scores.top_known(2) == [2, 3]
    assert scores.top_unknown(1) == [1]
    assert scores.table(1)[0] == {
        "kind": "known",
        "rank": 1,
        "latent": 2,
        "f_known": 1.0,
        "f_unknown": 0.0,
        "score": 1.0,
    }
