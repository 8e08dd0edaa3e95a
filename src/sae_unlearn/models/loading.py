"""Load a causal LM for editing without ever writing to its source directory."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from sae_unlearn.errors import UserInputError
from sae_unlearn.io_utils import cache_root
from sae_unlearn.models.builtin import BUILTIN_MODELS, resolve_builtin


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserInputError("device 'cuda' was asked for but no CUDA GPU is visible; use --device cpu.")
    return torch.device(device)


def load_causal_lm(source: str | Path, device: str = "cpu", dtype: torch.dtype = torch.float32):
    """A hub id, a local directory or a built-in name (see ``builtin.py``); the source is read-only to us."""
    if str(source) in BUILTIN_MODELS:
        source = resolve_builtin(str(source), cache_root())
    path = Path(source)
    if not path.exists() and str(source).startswith((".", "/")):
        raise UserInputError(f"Model directory {source} does not exist.")
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    model = AutoModelForCausalLM.from_pretrained(str(source), dtype=dtype)
    model.to(resolve_device(device))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
