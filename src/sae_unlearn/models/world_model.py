"""Train (or reuse from the cache) the tiny GPT-2 that has learned the synthetic world.

The tokenizer is word-level (built with ``tokenizers``): the world's vocabulary is closed, and
one token per word keeps the model tiny and the entity's last token unambiguous.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from tqdm.auto import tqdm
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from sae_unlearn.entities.synthetic import SyntheticWorld
from sae_unlearn.io_utils import atomic_save_dir, atomic_write_json

SPECIAL = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]


def build_tokenizer(words: list[str]) -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate(SPECIAL + words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="[BOS] $A", special_tokens=[("[BOS]", vocab["[BOS]"])])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]", eos_token="[EOS]"
    )


# Bump when the world generator or the training recipe changes: the cache key must change with them.
WORLD_FORMAT_VERSION = 3


def world_cache_key(world_cfg: dict, model_cfg: dict, corpus: list[str]) -> str:
    """The corpus itself is part of the key: a change to the world generator (names, phrasings) retrains, even
    where the config and format version stay the same (a cached model of another corpus knew other entities)."""
    text = hashlib.sha256("\n".join(corpus).encode()).hexdigest()
    # an option left unset (None) is left out, so the models cached before the option existed keep their key
    model_cfg = {k: v for k, v in model_cfg.items() if v is not None}
    blob = json.dumps(
        {"world": world_cfg, "model": model_cfg, "v": WORLD_FORMAT_VERSION, "corpus": text}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def train_world_model(
    world: SyntheticWorld,
    n_layer: int = 4,
    d_model: int = 128,
    n_head: int = 4,
    epochs: int = 40,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = True,
    grad_clip: float | None = None,
) -> tuple[GPT2LMHeadModel, PreTrainedTokenizerFast]:
    torch.manual_seed(seed)
    tokenizer = build_tokenizer(world.all_words)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=48,
        n_embd=d_model,
        n_layer=n_layer,
        n_head=n_head,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    model = GPT2LMHeadModel(config)
    # Sentences end with EOS so that generation stops after the answer, as a chat model's would.
    enc = tokenizer([f"{line} {tokenizer.eos_token}" for line in world.corpus], padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    labels = ids.masked_fill(mask == 0, -100)
    n = ids.shape[0]
    steps_per_epoch = math.ceil(n / batch_size)
    total = epochs * steps_per_epoch
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.1)
    rng = random.Random(seed)
    model.train()
    bar = tqdm(total=total, desc="train world model", disable=not progress)
    for _ in range(epochs):
        order = list(range(n))
        rng.shuffle(order)
        for start in range(0, n, batch_size):
            idx = torch.tensor(order[start : start + batch_size])
            loss = model(input_ids=ids[idx], attention_mask=mask[idx], labels=labels[idx]).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    model.eval()
    return model, tokenizer


def get_or_train_world_model(
    world: SyntheticWorld, world_cfg: dict, model_cfg: dict, cache_dir: Path, progress: bool = True
) -> Path:
    """Return the cached model directory for this world and model config, training it if absent."""
    target = Path(cache_dir) / "world-models" / world_cache_key(world_cfg, model_cfg, world.corpus)
    if (target / "config.json").exists():
        return target

    def write(tmp: Path) -> None:
        model, tokenizer = train_world_model(world, progress=progress, **model_cfg)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / "sae_unlearn_world.json", {"world": world_cfg, "model": model_cfg})

    return atomic_save_dir(target, write)
