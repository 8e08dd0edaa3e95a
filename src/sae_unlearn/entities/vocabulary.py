"""What a tokenizer can write: the extra texts a loss or split adds (openings, refusals) must be in the model's
own language. The synthetic world's word-level vocabulary turns English into ``[UNK]`` tokens, which train the
model on noise around the prompt (docs/results.md, session 42), so each such text comes in an English form and
in the world's words."""

from __future__ import annotations


def writable(tokenizer, text: str) -> bool:
    """``text`` encodes without the tokenizer's unknown token."""
    unk = tokenizer.unk_token_id
    return unk is None or unk not in tokenizer(text, add_special_tokens=False)["input_ids"]


def in_vocabulary(tokenizer, english: tuple[str, ...], world: tuple[str, ...]) -> tuple[str, ...]:
    """``english`` where the tokenizer writes every one of them, else those of ``world`` it writes: a word-level
    vocabulary (the synthetic world's) has only the world's words."""
    if all(writable(tokenizer, f" {t}") for t in english):
        return english
    return tuple(t for t in world if writable(tokenizer, f" {t}"))
