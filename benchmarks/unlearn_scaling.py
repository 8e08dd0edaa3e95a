"""Benchmark: seconds and peak memory to unlearn 1, 10 and 100 entities with the SAE-guided method
(issue 7: 100 targets should cost at most 10x one). Same workspace, same step budget for every size;
prints a table and writes JSON. Forget recall before/after shows whether that budget forgot the targets
(issue 7: one entity in under 60 s means forgotten, not merely 60 s of steps).

    python benchmarks/unlearn_scaling.py [--model smollm2-135m] [--sizes 1,10,100] [--steps 20] [--out F.json]

Without --model it uses the synthetic world (whose default config knows ~175 entities).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import psutil
import torch

from sae_unlearn.config import load_config
from sae_unlearn.metrics.recall import recall
from sae_unlearn.pipeline import build_workspace, get_sae, make_split, run_method, select_latents

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "src" / "sae_unlearn" / "data" / "smollm2_demo.yaml"


class PeakRSS:
    """Samples the process's resident memory in a thread (torch allocations are invisible to tracemalloc)."""

    def __enter__(self):
        self.proc, self.peak, self.stop = psutil.Process(), 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.05)

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="smollm2-135m, a directory or hub id; default: the synthetic world")
    ap.add_argument("--sizes", default="1,10,100")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="unlearn_scaling.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    overrides = {"unlearn.steps": args.steps, "unlearn.eval_every": 10**6}  # no early stop: equal work per size
    cfg = load_config(DEMO_CONFIG if args.model else None, overrides | ({"model.name": args.model} if args.model else {}))
    ws = get_sae(build_workspace(cfg, progress=False), progress=False)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        ws.cfg.unlearn.n_forget = n
        select_latents(make_split(ws))
        n_tok = ws.cfg.eval.max_new_tokens
        before = recall(ws.model, ws.tokenizer, ws.split.forget, ws.eval_heldout, n_tok)
        with PeakRSS() as mem:
            model, outcome, seconds = run_method(ws, "sae_guided", progress=False)
        after = recall(model, ws.tokenizer, ws.split.forget, ws.eval_heldout, n_tok)
        del model
        rows.append({"targets": n, "forget_prompts": sum(len(e.facts) for e in ws.split.forget), "steps": outcome.steps_run,
                     "seconds": round(seconds, 2), "seconds_per_step": round(seconds / max(1, outcome.steps_run), 3),
                     "peak_rss_gib": round(mem.peak / 2**30, 2), "forget_recall_before": round(before, 3),
                     "forget_recall_after": round(after, 3)})
        print(rows[-1], flush=True)
    base = rows[0]["seconds"]
    for r in rows:
        r["time_vs_first"] = round(r["seconds"] / base, 2)
    print(f"\n{'targets':>8} {'prompts':>8} {'steps':>6} {'seconds':>9} {'s/step':>7} {'x first':>8} {'peak GiB':>9} "
          f"{'forget recall':>14}")
    for r in rows:
        print(f"{r['targets']:>8} {r['forget_prompts']:>8} {r['steps']:>6} {r['seconds']:>9} {r['seconds_per_step']:>7} "
              f"{r['time_vs_first']:>8} {r['peak_rss_gib']:>9} {r['forget_recall_before']:>6.3f}->{r['forget_recall_after']:.3f}")
    Path(args.out).write_text(json.dumps({"model": args.model or "synthetic", "threads": args.threads, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
