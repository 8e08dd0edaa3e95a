"""Issue 21's bars over target draws: reads `sae_guided_variants.py` results, prints a table, writes JSON and a plot.

    python benchmarks/variant_tradeoff.py benchmarks/results_sae_guided_variants_smollm2_session4*.json \
        --dev-seed 2 --base '{"w_downstream": 0.5}' --plot docs/img/tradeoff_smollm2_sparse_sae.png

Each input file holds one `sae_guided_variants.py` output per draw under a ``"seedN"`` key (as the session
results files do), or several under named keys inside it (``{"seed1": {"retain_fraction_0.5": run, ...}}``); a
run's recorded ``--set`` keys, less the draw's own (``seed``, ``world.seed``), join its variants' labels. Per
variant and draw: the points above each floor (held-out forget, question form, relearned), the share of held-out
known facts kept, the retain drop and the perplexity change, which are the quantities issue 21's Done-when bounds. Draws named by ``--dev-seed`` chose the settings and are listed but left
out of the mean and spread, so the summary reads only draws that chose nothing. Written by hand because this is
a table over our own JSON, not a metric any library computes.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sae_unlearn.io_utils import atomic_write_json  # noqa: E402
from sae_unlearn.report.intervals import seed_summary  # noqa: E402

# issue 21's Done-when: (key, bound, True when the value must stay at most the bound)
BARS = {
    "forget_over_floor": (5.0, True),
    "questions_over_floor": (10.0, True),
    "relearned_over_floor": (10.0, True),
    "heldout_known_kept_pct": (95.0, False),
    "retain_drop": (1.0, True),
    "perplexity_change_pct": (2.0, True),
}
ADAPTER_KEYS = ("lora", "lora_rank")  # left out of a label where every variant of the inputs has the same ones
DRAW_KEYS = ("seed", "world.seed")  # --set keys that name the draw, not a setting: never in a label


def variant_label(options: dict, base: dict, hide_adapter: bool = True) -> str:
    """The variant's settings over the run's ``--set`` ones (``base``), which the results files do not record."""
    shown = {k: v for k, v in {**base, **options}.items() if not (hide_adapter and k in ADAPTER_KEYS)}
    return json.dumps(shown, sort_keys=True)


def adapter_varies(runs: list[dict]) -> bool:
    """Whether the variants differ in their adapter settings (some full weights, some LoRA): then the label must
    say which, or a LoRA run and a full-weight run of the same options would be read as one variant."""
    adapters = {tuple(v["options"].get(k) for k in ADAPTER_KEYS) for run in runs for v in run["variants"]}
    return len(adapters) > 1


def draw_rows(run: dict, base: dict, hide_adapter: bool = True) -> list[tuple[str, dict[str, float | None]]]:
    """Each variant of one draw's run as (label, the quantities the bars bound); None where the run did not
    measure one (no ``--relearn``, or a world without question phrasings)."""
    base = base | {k: v for k, v in run.get("set", {}).items() if k not in DRAW_KEYS}
    before, floor = run["before"], run["same_prompt_floor"]
    question_floor = before.get("unknown_recall_same_prompts_form_question")
    relearn_floor = run.get("relearn_floors", {}).get("relearn_recall_unknown")

    def over(value: float | None, floor: float | None) -> float | None:
        return None if value is None or floor is None else 100 * (value - floor)

    rows = []
    for v in run["variants"]:
        options = dict(v["options"])
        if v.get("steps") is not None:
            options.setdefault("steps", v["steps"])
        rows.append(
            (
                variant_label(options, base, hide_adapter),
                {
                    "forget_over_floor": 100 * (v["forget"] - floor),
                    "questions_over_floor": over(v.get("form_question"), question_floor),
                    "relearned_over_floor": over(v.get("relearn"), relearn_floor),
                    "heldout_known_kept_pct": 100 * v["heldout_known"] / before["heldout_known"],
                    "retain_drop": 100 * (before["retain"] - v["retain"]),
                    "perplexity_change_pct": 100 * v["perplexity_change"],
                    "unlearn_seconds": v["unlearn_seconds"],
                },
            )
        )
    return rows


def summarise(files: list[Path], dev_seeds: set[int], base: dict) -> dict:
    per_variant: dict[str, dict[int, dict[str, float | None]]] = defaultdict(dict)
    runs = [  # (seed, that draw's run), in file order
        (int(key.removeprefix("seed")), run)
        for path in files
        for key, value in json.loads(path.read_text()).items()
        if key.startswith("seed")
        for run in ([value] if "variants" in value else value.values())
    ]
    hide_adapter = not adapter_varies([run for _, run in runs])
    for seed, run in runs:
        for label, row in draw_rows(run, base, hide_adapter):
            per_variant[label][seed] = row  # a later file's run of the same variant and draw wins
    summary = {}
    for label, by_seed in per_variant.items():
        fresh_seeds = sorted(s for s in by_seed if s not in dev_seeds)
        fresh = [by_seed[s] for s in fresh_seeds]
        # what `compare --seeds` reports per metric: mean, sd, the mean's bootstrap interval; unmeasured keys left out
        stats = seed_summary([{label: row} for row in fresh])[label] if fresh else {}
        met = {}  # only the bars every fresh draw measured
        for key, (bound, at_most) in BARS.items():
            values = [v for row in fresh if (v := row[key]) is not None]
            if fresh and len(values) == len(fresh):
                met[key] = all((v <= bound) if at_most else (v >= bound) for v in values)
        summary[label] = {
            "draws": {str(s): r for s, r in sorted(by_seed.items())},
            "fresh_draws": fresh_seeds,
            "stats_over_fresh_draws": stats,
            "bar_met_on_every_fresh_draw": met if fresh else None,
        }
    return summary


def print_table(summary: dict) -> None:
    keys = list(BARS) + ["unlearn_seconds"]
    print("| variant | fresh draws | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 2) + "|")
    for label, s in summary.items():
        stats, met = s["stats_over_fresh_draws"], s["bar_met_on_every_fresh_draw"] or {}
        cells = []
        for key in keys:
            k = stats.get(key)
            text = "-" if k is None else f"{k['mean']:.1f}" + (f" ({k['sd']:.1f})" if k["n"] > 1 else "")
            cells.append(text + (" *" if met.get(key) is False else ""))
        print(f"| `{label}` | {len(s['fresh_draws'])} | " + " | ".join(cells) + " |")
    print("mean (sd) over the fresh draws; * = the bar missed on at least one fresh draw")


def plot(summary: dict, path: Path) -> None:
    """Held-out known kept against forget above its floor, one point per variant and fresh draw."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, s in summary.items():
        fresh = [s["draws"][str(seed)] for seed in s["fresh_draws"]]
        if not fresh:
            continue
        ax.scatter(
            [r["forget_over_floor"] for r in fresh],
            [r["heldout_known_kept_pct"] for r in fresh],
            label=label,
            alpha=0.8,
        )
    ax.axvline(BARS["forget_over_floor"][0], color="grey", linestyle="--", linewidth=1)
    ax.axhline(BARS["heldout_known_kept_pct"][0], color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("held-out forget recall, points above the unknown floor (bar: at most 5)")
    ax.set_ylabel("held-out known facts kept, % (bar: at least 95)")
    ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="results JSON files with one 'seedN' key per draw")
    parser.add_argument("--dev-seed", type=int, action="append", default=[], help="a draw that chose settings")
    parser.add_argument(
        "--base", default="{}", help="JSON: the SAE-guided options the runs' --set gave every variant, for the labels"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench-variant-tradeoff.json"))
    parser.add_argument("--plot", type=Path, default=None, help="PNG: held-out known kept vs forget above floor")
    args = parser.parse_args()
    summary = summarise(args.files, set(args.dev_seed), json.loads(args.base))
    print_table(summary)
    atomic_write_json(args.out, {"dev_seeds": args.dev_seed, "bars": BARS, "variants": summary})
    print(f"wrote {args.out}")
    if args.plot:
        plot(summary, args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
