import pytest
import torch
from sae_lens import StandardTrainingSAE, StandardTrainingSAEConfig
from transformers import GPT2Config, GPT2LMHeadModel

from sae_unlearn.errors import UserInputError
from sae_unlearn.sae.latents import separation_scores
from sae_unlearn.sae.loading import check_sae_matches, load_sae
from sae_unlearn.sae.quality import sae_quality, warn_if_poor
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


def test_sae_training_data_can_leave_out_the_bos_token(micro_workspace):
    """The micro world's tokenizer starts every text with BOS, an attention sink whose residual would set the
    SAE's normalisation: with ``sae.exclude_special_tokens`` (Gemma's setting) no BOS row reaches training, every
    other token's row does, unchanged."""
    from sae_unlearn.stages.sae import capture_training_activations

    ws = micro_workspace
    texts = ["Alice Smith was born in Paris.", "The capital of Spain is"]
    ids = [ws.tokenizer(t)["input_ids"] for t in texts]
    assert all(row[0] == ws.tokenizer.bos_token_id for row in ids), "the test needs a tokenizer that adds BOS"

    def capture(exclude: bool) -> torch.Tensor:
        sae = ws.cfg.sae.model_copy(update={"exclude_special_tokens": exclude})
        return capture_training_activations(ws.with_config(ws.cfg.model_copy(update={"sae": sae})), texts)

    kept, every = capture(True), capture(False)
    assert len(every) == sum(len(row) for row in ids) and len(kept) == len(every) - len(texts)
    not_bos = torch.tensor([i > 0 for row in ids for i in range(len(row))])
    assert torch.allclose(kept, every[not_bos])


def test_mean_started_decoder_bias_learns_a_large_offset_in_few_steps():
    """Data whose mean is most of every vector (as Gemma's residual): in the same short training, starting the
    decoder bias at the mean reconstructs far better than sae-lens' zero start."""
    torch.manual_seed(0)
    codes = torch.rand(8192, 24) * (torch.rand(8192, 24) < 0.1)
    acts = codes @ torch.randn(24, 16) + 40.0 * torch.randn(16)
    fvu = {}
    for start in ("zeros", "mean"):
        sae = train_sae(
            acts, "blocks.1.hook_resid_post", "tiny", 2, 0.05, total_samples=20_000, batch_size=256, b_dec_init=start
        )
        with torch.no_grad():
            recon = sae.decode(sae.encode(acts))
        fvu[start] = float((recon - acts).pow(2).sum() / (acts - acts.mean(0)).pow(2).sum())
    assert fvu["mean"] < 0.5 * fvu["zeros"], fvu


def test_sae_quality_reads_sparsity_and_fit_and_warns_on_a_dense_or_poor_sae(caplog):
    """An SAE whose dictionary is the data's own basis (latent i fires for +x_i, latent 16 + i for -x_i) on data
    with about 1.6 of 16 non-negative coordinates set: known L0, exact reconstruction, half the latents used."""
    sae = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=16, d_sae=32))
    with torch.no_grad():
        eye = torch.eye(16)
        sae.W_enc.copy_(torch.cat([eye, -eye], 1))
        sae.W_dec.copy_(torch.cat([eye, -eye], 0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    torch.manual_seed(0)
    x = torch.rand(4096, 16) * (torch.rand(4096, 16) < 0.1)
    q = sae_quality(sae, x)
    assert q["l0"] == pytest.approx(float((x > 0).sum(-1).float().mean())) and q["l0_share"] < 0.1, q
    assert q["explained_variance"] == pytest.approx(1.0, abs=1e-4) and q["alive_share"] == 0.5, q
    assert not warn_if_poor(q, "the test data")
    dense = sae_quality(sae, x + 30.0)  # every coordinate set: every positive latent fires
    assert dense["l0_share"] == pytest.approx(0.5), dense
    untrained = sae_quality(StandardTrainingSAE(StandardTrainingSAEConfig(d_in=16, d_sae=32)), x + 30.0)
    assert untrained["explained_variance"] < 0.5, untrained
    for poor in (dense, untrained):
        caplog.clear()
        with caplog.at_level("WARNING"):
            assert warn_if_poor(poor, "the test data")
        assert "sae.exclude_special_tokens: true and sae.b_dec_init: mean" in caplog.text


def test_the_document_start_we_add_is_left_out_like_a_bos():
    """A tokenizer with no BOS gets ``<|endoftext|>`` as its document start (models/loading.py), as SmolLM2 does,
    where that token is the unk token, on no structural list: it is left out all the same; words are kept."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    from sae_unlearn.models.loading import ensure_document_start
    from sae_unlearn.stages.sae import ordinary_tokens

    vocab = {"<|endoftext|>": 0, "<pad>": 1, "Paris": 2, "is": 3, "nice": 4}
    core = Tokenizer(WordLevel(vocab, unk_token="<|endoftext|>"))
    core.pre_tokenizer = Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<|endoftext|>", pad_token="<pad>")
    ensure_document_start(tok)
    enc = tok(["Paris is nice", "Paris"], padding=True, return_tensors="pt", return_special_tokens_mask=True)
    assert enc["input_ids"][:, 0].tolist() == [0, 0], "the test needs the document start in front"
    assert ordinary_tokens(tok, enc).tolist() == [[False, True, True, True], [False, True, False, False]]
