"""Benchmark: seconds, peak memory and forget recall to unlearn 1 .. 1000 entities with the SAE-guided method
(issue 7: 100 targets at most 10x one; issue 25: 1000 targets at most 2x the peak memory and 20x the time of one).
Same step budget for every size; prints a table and writes JSON.

    python benchmarks/unlearn_scaling.py [--model smollm2-135m] [--sizes 1,10,100] [--steps 20] [--out F.json]
        [--forget-batches default,all,24] [--until-forgotten] [--world-known 420]

Each size runs in a process of its own: a process's resident memory rarely shrinks after a large run, so sizes
measured one after another in one process would report the largest one's peak for all that follow.
``--forget-batches`` runs every size once per setting of ``unlearn.methods.sae_guided.forget_batch`` ("default":
the config's; "all": every forget prompt in every step; N: N sampled prompts per step).
Without --model it uses the synthetic world (whose default config knows ~175 entities; ``--world-known 420``
builds one with 420 known entities per type, ~1,200 in all, for 1000 targets: the world model trains once, ~15
minutes on 2 cores, and is cached).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import torch

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "src" / "sae_unlearn" / "data" / "smollm2_demo.yaml"
GIB = 2**30


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
            time.sleep(0.02)

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def measure_one(args: argparse.Namespace) -> dict:
    """One size, one forget-batch setting, in this process: the row of the table."""
    from sae_unlearn.config import load_config
    from sae_unlearn.metrics.recall import recall
    from sae_unlearn.stages.latents import select_latents
    from sae_unlearn.stages.sae import get_sae
    from sae_unlearn.stages.split import make_split
    from sae_unlearn.stages.subject import build_workspace
    from sae_unlearn.stages.unlearn import run_method

    torch.set_num_threads(args.threads)
    # default: no early stop, equal work per size; --until-forgotten: the method's own stop rule, --steps a cap
    overrides: dict = {"unlearn.steps": args.steps, "unlearn.n_forget": args.one}
    if not args.until_forgotten:
        overrides["unlearn.methods.sae_guided.eval_every"] = 10**6
    if args.model:
        overrides["model.name"] = args.model
    elif args.world_known:
        overrides["world.n_known"] = args.world_known
    if args.batch != "default":
        overrides["unlearn.methods.sae_guided.forget_batch"] = None if args.batch == "all" else int(args.batch)
    cfg = load_config(DEMO_CONFIG if args.model else None, overrides)
    ws = get_sae(build_workspace(cfg, progress=False), progress=False)
    select_latents(make_split(ws))
    if len(ws.split.forget) < args.one:
        raise SystemExit(f"only {len(ws.split.forget)} targets available, {args.one} asked (--world-known more)")
    n_tok = ws.cfg.eval.max_new_tokens
    before = recall(ws.model, ws.tokenizer, ws.split.forget, ws.eval_heldout, n_tok)
    ready = psutil.Process().memory_info().rss
    with PeakRSS() as mem:
        model, outcome, seconds = run_method(ws, "sae_guided", False)
    after = recall(model, ws.tokenizer, ws.split.forget, ws.eval_heldout, n_tok)
    return {
        "forget_batch": args.batch,
        "targets": args.one,
        "forget_prompts": sum(len(e.facts) for e in ws.split.forget),
        "steps": outcome.steps_run,
        "stopped": outcome.stopped_reason,
        "seconds": round(seconds, 2),
        "seconds_per_step": round(seconds / max(1, outcome.steps_run), 3),
        "rss_before_unlearning_gib": round(ready / GIB, 2),
        "peak_rss_gib": round(mem.peak / GIB, 2),
        "forget_recall_before": round(before, 3),
        "forget_recall_after": round(after, 3),
        "stage_seconds": {k: round(v, 1) for k, v in ws.timings.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="smollm2-135m, a directory or hub id; default: the synthetic world")
    ap.add_argument("--sizes", default="1,10,100")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--world-known", type=int, default=None, help="synthetic world: known entities per type")
    ap.add_argument(
        "--forget-batches",
        default="default",
        help='comma list of unlearn.methods.sae_guided.forget_batch values; "all" = every prompt, "default" = the '
        "config's",
    )
    ap.add_argument(
        "--until-forgotten",
        action="store_true",
        help="stop each run by the method's early-stop rule (targets read as unknown); --steps caps it",
    )
    ap.add_argument("--out", default="unlearn_scaling.json")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # a child: this size only
    ap.add_argument("--batch", default="default", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one is not None:
        print("ROW " + json.dumps(measure_one(args)), flush=True)
        return
    rows = []
    passed = ["--steps", str(args.steps), "--threads", str(args.threads)]
    passed += (["--model", args.model] if args.model else []) + (["--until-forgotten"] if args.until_forgotten else [])
    passed += ["--world-known", str(args.world_known)] if args.world_known else []
    for batch in args.forget_batches.split(","):
        for n in (int(s) for s in args.sizes.split(",")):
            child = subprocess.run(
                [sys.executable, __file__, *passed, "--one", str(n), "--batch", batch],
                capture_output=True,
                text=True,
                check=False,  # a failed size is reported below with its stderr
            )
            line = next((x for x in child.stdout.splitlines() if x.startswith("ROW ")), None)
            if line is None:
                sys.exit(f"size {n}, forget_batch {batch} failed:\n{child.stderr[-3000:]}")
            rows.append(json.loads(line[4:]))
            print(rows[-1], flush=True)
    for r in rows:  # against the smallest size with the same forget-batch setting
        first = next(b for b in rows if b["forget_batch"] == r["forget_batch"])
        r["time_vs_first"] = round(r["seconds"] / first["seconds"], 2)
        r["peak_vs_first"] = round(r["peak_rss_gib"] / first["peak_rss_gib"], 2)
    print(
        f"\n{'batch':>7} {'targets':>8} {'prompts':>8} {'steps':>6} {'seconds':>9} {'s/step':>7} {'x first':>8} "
        f"{'peak GiB':>9} {'x first':>8} {'forget recall':>14}"
    )
    for r in rows:
        print(
            f"{r['forget_batch']:>7} {r['targets']:>8} {r['forget_prompts']:>8} {r['steps']:>6} {r['seconds']:>9} "
            f"{r['seconds_per_step']:>7} {r['time_vs_first']:>8} {r['peak_rss_gib']:>9} {r['peak_vs_first']:>8} "
            f"{r['forget_recall_before']:>6.3f}->{r['forget_recall_after']:.3f}"
        )
    Path(args.out).write_text(
        json.dumps(
            {
                "model": args.model or "synthetic",
                "world_known_per_type": args.world_known,
                "threads": args.threads,
                "steps": args.steps,
                "until_forgotten": args.until_forgotten,
                "rows": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
