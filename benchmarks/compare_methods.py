"""Benchmark: every unlearning method, same budget, on the synthetic world or SmolLM2; prints the table, writes JSON.

    python benchmarks/compare_methods.py --out runs/bench-compare [--seed 0] [--steps 400]
    python benchmarks/compare_methods.py --smollm2 --out runs/bench-compare-smollm2   # the demo's SmolLM2 settings
    python benchmarks/compare_methods.py --config src/sae_unlearn/data/smollm2_deep.yaml --out runs/bench-compare-deep

Not run by the test suite (timings belong here, not in tests).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from sae_unlearn.cli import DEMO_REAL_CONFIG
from sae_unlearn.config import load_config
from sae_unlearn.report.compare import compare_table
from sae_unlearn.runs import ALL_METHODS, run_compare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-compare"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--methods", default=",".join(ALL_METHODS))
    parser.add_argument(
        "--no-sweep", action="store_true", help="each method at its configured values (compare --no-sweep)"
    )
    parser.add_argument(
        "--smollm2", action="store_true", help="SmolLM2-135M with the demo's config instead of the synthetic world"
    )
    parser.add_argument(
        "--config", type=Path, default=None, help="a real-model config file (e.g. the deep SmolLM2 preset)"
    )
    args = parser.parse_args()
    config = args.config or (DEMO_REAL_CONFIG if args.smollm2 else None)
    cfg = load_config(
        config, {"seed": args.seed, "world.seed": None if config else args.seed, "unlearn.steps": args.steps}
    )
    t0 = time.time()
    metrics = run_compare(
        cfg, args.out, overwrite=True, progress=False, methods=tuple(args.methods.split(",")), sweep=not args.no_sweep
    )
    wall = time.time() - t0
    print(compare_table(metrics["methods"]))
    print(f"\nwall {wall:.1f} s on {torch.get_num_threads()} threads ({platform.processor() or platform.machine()})")
    result = {
        "world": "smollm2-135m" if args.smollm2 else "synthetic",
        "seed": args.seed,
        "wall_seconds": wall,
        "threads": torch.get_num_threads(),
        "methods": metrics["methods"],
        "sweep": not args.no_sweep,
        "tuning": metrics.get("tuning"),
    }
    (args.out / "benchmark.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out / 'benchmark.json'}")


if __name__ == "__main__":
    main()
