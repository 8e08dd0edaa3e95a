"""Stage 2, the SAE: loaded (sae-lens) or trained on the model's activations and cached by content hash."""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from pathlib import Path

import torch
from sae_lens.util import get_special_token_ids

from sae_unlearn import parallel
from sae_unlearn.io_utils import cache_root
from sae_unlearn.models.capture import capture_all_positions
from sae_unlearn.models.layers import hook_name, model_device
from sae_unlearn.models.prompts import EncodedPrompts, fact_prompts
from sae_unlearn.sae.corpus import sae_corpus
from sae_unlearn.sae.loading import check_sae_matches, load_sae
from sae_unlearn.sae.training import save_sae, train_sae
from sae_unlearn.state import SAEFrame, Workspace


def sae_training_texts(ws: Workspace) -> list[str]:
    """Synthetic: the corpus plus every entity prompt (known, obscure and unknown), so latents cover
    all three. Real: every fact of the file and the fictional entities, plus the model's own text."""
    if ws.world is None:
        s = ws.cfg.sae
        return sae_corpus(
            ws.model,
            ws.tokenizer,
            ws.candidates + ws.never_seen,
            s.generation_prompts,
            s.generation_tokens,
            ws.cfg.seed,
        )
    w = ws.world
    return w.corpus + fact_prompts(w.known + w.obscure + w.unknown, heldout=None)[0]


def capture_training_activations(ws: Workspace, texts: list[str]) -> torch.Tensor:
    """Every token's residual, less, with ``sae.exclude_special_tokens``, the structural special tokens' (BOS,
    EOS, PAD) and those the tokenizer adds (``ordinary_tokens``): Gemma's BOS residual is an attention sink ~13x
    the median token's norm, and kept it set the SAE's normalisation and reconstruction loss, leaving it dense on
    the tokens that matter (docs/results.md, session 37). Gemma Scope and sae-lens' ``exclude_special_tokens``
    leave them out likewise."""
    ws.tokenizer.padding_side = "right"  # EncodedPrompts assumes right padding
    enc = ws.tokenizer(texts, padding=True, return_tensors="pt", return_special_tokens_mask=True)
    lengths = enc["attention_mask"].sum(1)
    prompts = EncodedPrompts(enc["input_ids"], enc["attention_mask"], torch.zeros_like(lengths), lengths - 1)
    acts = capture_all_positions(ws.model, prompts, ws.layer)  # the real tokens, row by row
    if not ws.cfg.sae.exclude_special_tokens:
        return acts
    return acts[ordinary_tokens(ws.tokenizer, enc)[enc["attention_mask"].bool()]]


def ordinary_tokens(tokenizer, enc) -> torch.Tensor:
    """[batch, seq] True where a token is neither on sae-lens' structural list nor added by the tokenizer
    (``enc`` encoded with ``return_special_tokens_mask``): SmolLM2's document start (models/loading.py) is its
    unk token ``<|endoftext|>``, on no structural list, and its residual is 113x the median's."""
    special = torch.tensor(get_special_token_ids(tokenizer), dtype=enc["input_ids"].dtype)
    return ~torch.isin(enc["input_ids"], special) & enc["special_tokens_mask"].eq(0)


def get_sae(ws: Workspace, progress: bool = True) -> Workspace:
    t0 = time.time()
    scfg = ws.cfg.sae
    device = str(model_device(ws.model))  # the SAE reads the model's residual stream: same device
    if scfg.path is not None or scfg.release is not None:
        sae = load_sae(scfg.path or scfg.release or "", scfg.sae_id, device=device)
        sae_dir = scfg.path or Path(f"{scfg.release}:{scfg.sae_id}")  # where it came from, for the report
    elif not ws.cacheable:  # weights known only in memory (the Python API): trained for them, cached nowhere
        trained = _train(ws, device)
        with tempfile.TemporaryDirectory() as tmp:  # the saved form loads as the inference SAE class
            save_sae(trained, Path(tmp))
            sae = load_sae(Path(tmp), device=device)
        sae_dir = Path("trained-in-memory")
    else:
        entities = hashlib.sha256(
            json.dumps([e.to_dict(aliases=False) for e in ws.candidates + ws.never_seen]).encode()
        ).hexdigest()
        key = hashlib.sha256(
            json.dumps(
                {
                    "model": str(ws.model_dir),
                    "layer": ws.layer,
                    "sae": scfg.model_dump(mode="json"),
                    "entities": entities,
                    "seed": ws.cfg.seed,
                    "dtype": ws.cfg.model.dtype,
                }
                # 2: the tokens a tokenizer adds are left out too (``ordinary_tokens``; 1 left out only sae-lens'
                # structural ones, for one session); absent when nothing is left out
                | ({"excluded_tokens": 2} if scfg.exclude_special_tokens else {}),
                sort_keys=True,
            ).encode()
        ).hexdigest()[:16]
        sae_dir = cache_root() / "saes" / key
        if not parallel.agree((sae_dir / "cfg.json").exists()):
            # capture is split across processes; training is repeated in each (same seed, same SAE)
            trained = _train(ws, device)
            if parallel.is_main():
                save_sae(trained, sae_dir)
            parallel.barrier()
        sae = load_sae(sae_dir, device=device)
    check_sae_matches(sae, ws.model, ws.layer)
    sae.eval()
    ws.timings["sae"] = time.time() - t0
    return with_sae(ws, sae, sae_dir)


def with_sae(ws: Workspace, sae, sae_dir: Path) -> Workspace:
    """``ws`` with its SAE stage done: a loaded, trained or given SAE (the Python API's)."""
    return ws.with_(sae_frame=SAEFrame(sae, sae_dir))


def _train(ws: Workspace, device: str):
    scfg = ws.cfg.sae
    acts = capture_training_activations(ws, sae_training_texts(ws))
    return train_sae(
        acts,
        hook_name(ws.layer),
        str(ws.model_dir),
        scfg.expansion,
        scfg.l1_coefficient,
        scfg.total_samples,
        scfg.batch_size,
        scfg.lr,
        seed=ws.cfg.seed,
        device=device,
        b_dec_init=scfg.b_dec_init,
    )
