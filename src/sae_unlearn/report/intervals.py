"""`compare --seeds N`: every metric as mean, spread and a 95 % bootstrap interval over the draws, because one draw
of 10 targets is a handful of facts (a recall of 0.111 against 0.089 is one fact)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np
from scipy.stats import bootstrap

from sae_unlearn.io_utils import atomic_write_json, atomic_write_text
from sae_unlearn.report.compare import COLUMNS

CONFIDENCE = 0.95
RESAMPLES = 9999


def interval(values: list[float], seed: int = 0) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the mean (scipy); the value itself when every draw agrees."""
    if len(set(values)) == 1:
        return values[0], values[0]
    res = bootstrap(
        (np.asarray(values, dtype=float),),
        np.mean,
        confidence_level=CONFIDENCE,
        n_resamples=RESAMPLES,
        method="percentile",  # BCa needs more draws than a comparison has; percentile is defined for any N >= 2
        random_state=seed,
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def seed_summary(records: list[dict[str, dict]]) -> dict[str, dict[str, dict]]:
    """Per method, per numeric key at least two draws have: the values, mean, sample sd, the mean's interval and
    ``n``, the draws that had it (a draw can lack a key for want of data: reverse questions need a target that is
    another entity's answer, and some draws of targets have none)."""
    out: dict[str, dict[str, dict]] = {}
    for name in records[0]:
        runs = [r[name] for r in records if name in r]
        keys = list(dict.fromkeys(k for r in runs for k in r))
        out[name] = {}
        for key in keys:
            values = [float(r[key]) for r in runs if _finite(r.get(key))]
            if len(values) < min(2, len(runs)):
                continue
            low, high = interval(values)
            out[name][key] = {
                "mean": float(np.mean(values)),
                "sd": float(np.std(values, ddof=1)),
                "ci95": [low, high],
                "n": len(values),
                "values": values,
            }
    return out


def _finite(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def intervals_table(summary: dict[str, dict[str, dict]], seeds: list[int], where: str = "`seed-<S>/`") -> str:
    """compare.md's columns, each cell "mean ± sd [95 % interval]"; the same-prompt floor first."""
    lead = ["unknown_recall_same_prompts"]
    cols = [c for c in lead + list(COLUMNS) if any(c in m for m in summary.values())]
    lines = [
        f"Mean ± sd over {len(seeds)} draws (seeds {', '.join(map(str, seeds))}), with the mean's 95 % percentile "
        f"bootstrap interval in brackets; (n=K): only K draws had that metric. Per-draw outputs: {where}.",
        "",
        "| method | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for name, stats in summary.items():
        cells = []
        for c in cols:
            s = stats.get(c)
            few = f" (n={s['n']})" if s and s["n"] < len(seeds) else ""  # the draws that had the key
            cells.append(f"{s['mean']:.3f} ± {s['sd']:.3f} [{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}]{few}" if s else "")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# the two trade-offs a reader weighs: the protected retain set, and the known entities no loss saw
_PANELS = (
    ("retain_recall_after", "retain recall after"),
    ("heldout_known_recall_after", "held-out known recall after"),
)


def _error_bar(stats: dict) -> list[list[float]]:
    """The interval as matplotlib's (below, above) distances from the mean; never negative, which float rounding
    makes them when every draw gave the same value (the bootstrap's mean then differs from it in the last bit)."""
    low, high = stats["ci95"]
    return [[max(0.0, stats["mean"] - low)], [max(0.0, high - stats["mean"])]]


def tradeoff_intervals_plot(summary: dict[str, dict[str, dict]], path: Path) -> Path:
    """compare's trade-off plot over draws: each method at its means, with its 95 % intervals as error bars on
    both axes, and the same-prompt floor's mean (and interval) as the forget goal."""
    panels = [(k, label) for k, label in _PANELS if any(k in m for m in summary.values())]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
    floor = next(
        (m["unknown_recall_same_prompts"] for m in summary.values() if "unknown_recall_same_prompts" in m), None
    )
    for ax, (key, label) in zip(axes[0], panels):
        for name, stats in summary.items():
            if "forget_recall_after" not in stats or key not in stats:
                continue
            x, y = stats["forget_recall_after"], stats[key]
            ax.errorbar(
                x["mean"], y["mean"],
                xerr=_error_bar(x), yerr=_error_bar(y),
                fmt="o", ms=6, capsize=3, label=name, zorder=3,
            )  # fmt: skip
        if floor is not None:
            ax.axvspan(*floor["ci95"], color="orange", alpha=0.15)
            ax.axvline(floor["mean"], color="orange", ls="--", label="unknown names, same prompts")
        ax.set_xlabel("forget recall after (goal: the unknown level)")
        ax.set_ylabel(f"{label} (higher is better)")
        ax.legend(fontsize=7)
    n = max(s["n"] for stats in summary.values() for s in stats.values())
    fig.suptitle(f"mean over {n} draws, 95 % bootstrap intervals", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_seed_summary(out: Path, seeds: list, summary: dict[str, dict[str, dict]], where: str, extra: dict) -> dict:
    """compare_seeds.json (``extra`` added), compare_seeds.md and plots/tradeoff_seeds.png: what ``compare --seeds``
    and ``aggregate`` write."""
    record = {"seeds": seeds, "methods": summary} | extra
    atomic_write_json(out / "compare_seeds.json", record)
    tradeoff_intervals_plot(summary, out / "plots" / "tradeoff_seeds.png")
    atomic_write_text(
        out / "compare_seeds.md",
        "# sae-unlearn comparison over draws\n\n"
        + intervals_table(summary, seeds, where)
        + "\n![trade-off over draws](plots/tradeoff_seeds.png)\n",
    )
    return record
