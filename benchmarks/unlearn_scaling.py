"""Benchmark: seconds and peak memory to unlearn 1, 10 and 100 entities with the SAE-guided method
(issue 7: 100 targets should cost at most 10x one). Same workspace, same step budget for every size;
prints a table and writes JSON. Forget recall before/after shows whether that budget forgot the targets
(issue 7: one entity in under 60 s means forgotten, not merely 60 s of steps).

    python benchmarks/unlearn_scaling.py [--model smollm2-135m] [--sizes 1,10,100] [--steps 20] [--out F.json]
        [--forget-batches all,24] [--until-forgotten]

``--forget-batches`` runs every size once per setting of ``unlearn.methods.sae_guided.forget_batch`` ("all": every forget
prompt in every step; N: N sampled prompts per step, so a step's cost stops growing with the targets).

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
from sae_unlearn.stages.latents import select_latents
from sae_unlearn.stages.sae import get_sae
from sae_unlearn.stages.split import make_split
from sae_unlearn.stages.subject import build_workspace
from sae_unlearn.stages.unlearn import run_method

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
    ap.add_argument(
        "--forget-batches",
        default="all",
        help='comma list of unlearn.methods.sae_guided.forget_batch values; "all" = every prompt',
    )
    ap.add_argument(
        "--until-forgotten",
        action="store_true",
        help="stop each run by the method's early-stop rule (targets read as unknown); --steps caps it",
    )
    ap.add_argument("--out", default="unlearn_scaling.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    # default: no early stop, equal work per size; --until-forgotten: the method's own stop rule, --steps a cap
    overrides = {"unlearn.steps": args.steps} | (
        {} if args.until_forgotten else {"unlearn.methods.sae_guided.eval_every": 10**6}
    )
    cfg = load_config(
        DEMO_CONFIG if args.model else None, overrides | ({"model.name": args.model} if args.model else {})
    )
    ws = get_sae(build_workspace(cfg, progress=False), progress=False)
    # with an empty cache (SAE_UNLEARN_CACHE=<new dir>) "sae" is the SAE's training time, capture included
    stages = {k: round(v, 1) for k, v in ws.timings.items()}
    print(f"stage seconds: {stages}", flush=True)
    rows = []
    for batch in args.forget_batches.split(","):
        forget_batch = None if batch == "all" else int(batch)
        for n in (int(s) for s in args.sizes.split(",")):
            ws.cfg.unlearn.n_forget = n
            select_latents(make_split(ws))
            n_tok = ws.cfg.eval.max_new_tokens
            n_prompts = sum(len(e.facts) for e in ws.split.forget)
            same = next((r for r in rows if r["targets"] == n and r["forget_batch"] == "all"), None)
            n_trained = sum(not f.heldout for e in ws.split.forget for f in e.facts)  # the loss's rows
            if same is not None and forget_batch is not None and forget_batch >= n_trained:
                rows.append(same | {"forget_batch": batch})  # the batch holds every prompt: the very same run
                continue
            before = recall(ws.model, ws.tokenizer, ws.split.forget, ws.eval_heldout, n_tok)
            with PeakRSS() as mem:
                model, outcome, seconds = run_method(ws, "sae_guided", False, {"forget_batch": forget_batch})
            after = recall(model, ws.tokenizer, ws.split.forget, ws.eval_heldout, n_tok)
            del model
            rows.append(
                {
                    "forget_batch": batch,
                    "targets": n,
                    "forget_prompts": n_prompts,
                    "steps": outcome.steps_run,
                    "stopped": outcome.stopped_reason,
                    "seconds": round(seconds, 2),
                    "seconds_per_step": round(seconds / max(1, outcome.steps_run), 3),
                    "peak_rss_gib": round(mem.peak / 2**30, 2),
                    "forget_recall_before": round(before, 3),
                    "forget_recall_after": round(after, 3),
                }
            )
            print(rows[-1], flush=True)
    for r in rows:  # against one target with the same forget-batch setting
        base = next(b["seconds"] for b in rows if b["forget_batch"] == r["forget_batch"])
        r["time_vs_first"] = round(r["seconds"] / base, 2)
    print(
        f"\n{'batch':>6} {'targets':>8} {'prompts':>8} {'steps':>6} {'seconds':>9} {'s/step':>7} {'x first':>8} "
        f"{'peak GiB':>9} {'forget recall':>14}"
    )
    for r in rows:
        print(
            f"{r['forget_batch']:>6} {r['targets']:>8} {r['forget_prompts']:>8} {r['steps']:>6} {r['seconds']:>9} "
            f"{r['seconds_per_step']:>7} {r['time_vs_first']:>8} {r['peak_rss_gib']:>9} "
            f"{r['forget_recall_before']:>6.3f}->{r['forget_recall_after']:.3f}"
        )
    Path(args.out).write_text(
        json.dumps(
            {
                "model": args.model or "synthetic",
                "threads": args.threads,
                "until_forgotten": args.until_forgotten,
                "stage_seconds": stages,
                "rows": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
