"""Benchmark: activation capture (hook + early stop) against a bare forward pass truncated at the same
layer (the decoder layer list sliced). Prints prompts/s for both and their ratio, writes JSON.

    python benchmarks/capture_throughput.py [--model DIR|smollm2-135m] [--layer L] [--n 2048] [--batch 64]

Without --model it uses the synthetic world's model (built and cached on first use).
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from sae_unlearn.config import DemoConfig
from sae_unlearn.models.capture import capture_entity_activations
from sae_unlearn.models.layers import decoder_layers, num_layers
from sae_unlearn.models.loading import load_causal_lm
from sae_unlearn.models.prompts import encode_facts
from sae_unlearn.stages.subject import build_synthetic


@contextmanager
def _truncated(model, layer: int):
    """Drop the decoder blocks above ``layer`` in place for the duration (the bare reference)."""
    layers = decoder_layers(model)
    removed = list(layers)[layer + 1 :]
    del layers[layer + 1 :]
    try:
        yield model
    finally:
        layers.extend(removed)


@torch.no_grad()
def _time(fn, repeats: int = 3) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--layer", type=int, default=None)
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-capture.json"))
    args = parser.parse_args()
    ws = build_synthetic(DemoConfig(), progress=False)
    model, tok = (ws.model, ws.tokenizer) if args.model is None else load_causal_lm(args.model)
    layer = args.layer if args.layer is not None else num_layers(model) // 2
    assert ws.world is not None
    entities = (ws.world.known * 10)[: max(1, args.n // len(ws.world.known[0].facts))]
    enc = encode_facts(tok, entities, heldout=None)

    def bare():
        with _truncated(model, layer):
            for s in range(0, len(enc), args.batch):
                b = enc.slice(s, s + args.batch)
                model.base_model(input_ids=b.input_ids, attention_mask=b.attention_mask, use_cache=False)

    t_capture = _time(lambda: capture_entity_activations(model, enc, layer, batch_size=args.batch))
    t_bare = _time(bare)
    row = {
        "model": args.model or str(ws.model_dir),
        "layer": layer,
        "prompts": len(enc),
        "batch": args.batch,
        "threads": torch.get_num_threads(),
        "capture_prompts_per_s": len(enc) / t_capture,
        "bare_truncated_prompts_per_s": len(enc) / t_bare,
        "ratio_capture_over_bare": t_bare / t_capture,
    }
    print(f"{'capture':>10} {row['capture_prompts_per_s']:10.1f} prompts/s")
    print(f"{'bare':>10} {row['bare_truncated_prompts_per_s']:10.1f} prompts/s (forward truncated at layer {layer})")
    print(f"{'ratio':>10} {row['ratio_capture_over_bare']:10.3f} (capture throughput / bare throughput)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
