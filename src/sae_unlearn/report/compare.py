"""``compare.md`` (methods as rows, metrics as columns, best value per column in bold) and the
forget-vs-retain trade-off plot."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import sae_unlearn.evaluation  # noqa: E402, F401  (registers every metric the evaluation computes)
from sae_unlearn.metrics.registry import REGISTRY, Better, describe, expand  # noqa: E402


def _columns() -> dict[str, Better]:
    """Written key -> how "best" is decided ("min", "max", a float target: closest wins, or "floor": closest to
    the metric's like-for-like floor), for the registry's compare columns: headline ones first, then attacks."""
    chosen = [m for section in ("headline", "attacks") for m in REGISTRY.values() if m.compare and m.section == section]
    return {(f"{m.key}_after" if m.scope == "state" else m.key): m.better for m in chosen}


COLUMNS = _columns()


def _floor_value(column: str, record: dict) -> float:
    """The like-for-like floor of a "closest to the floor" column: its metric's first floor the run has."""
    found = describe(column)
    assert found is not None, f"{column} is not in the metric registry"
    metric, form = found
    return next(record[expand(f, form)] for f in metric.floors if expand(f, form) in record)


def _best(values: dict[str, float], rule: Better) -> set[str]:
    finite = {k: v for k, v in values.items() if v == v}
    if not finite or rule is None or rule == "floor":  # "floor" arrives here as the floor's value
        return set()
    if rule == "min":
        target = min(finite.values())
        return {k for k, v in finite.items() if v == target}
    if rule == "max":
        target = max(finite.values())
        return {k for k, v in finite.items() if v == target}
    score = {k: abs(v - float(rule)) for k, v in finite.items()}
    low = min(score.values())
    return {k for k, s in score.items() if s == low}


def compare_table(methods: dict[str, dict]) -> str:
    cols = [c for c in COLUMNS if any(c in m for m in methods.values())]
    first = next(iter(methods.values()))
    floor = first.get("unknown_recall_same_prompts", first["unknown_recall"])
    lines = [
        f"Before unlearning: forget recall {first['forget_recall_before']:.3f}, retain {first['retain_recall_before']:.3f}, "
        f"held-out known {first['heldout_known_recall_before']:.3f}, unknown entities {first['unknown_recall']:.3f} "
        f"(on the targets' prompts with unknown names: {floor:.3f}), perplexity {first['perplexity_before']:.3f}.",
        "",
        "| method | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    rules = {c: _floor_value(c, first) if COLUMNS[c] == "floor" else COLUMNS[c] for c in cols}
    best = {c: _best({n: m.get(c, float("nan")) for n, m in methods.items()}, rules[c]) for c in cols}
    for name, m in methods.items():
        cells = []
        for c in cols:
            v = m.get(c, float("nan"))
            text = f"{v:.3f}" if isinstance(v, float) else str(v)
            cells.append(f"**{text}**" if name in best[c] else text)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Bold: best in the column (forget recall: closest to the unknown level on the same prompts, "
        f"{floor:.3f}; probe AUC: closest to 0.5).",
    ]
    if METHOD in methods and len(methods) > 1:
        lines += ["", _where_beaten(methods, cols, best)]
    return "\n".join(lines)


METHOD = "sae_guided"  # the method this library is about: the table says plainly where another beats it


def _where_beaten(methods: dict[str, dict], cols: list[str], best: dict[str, set[str]]) -> str:
    """One sentence per table: the columns where another method is bold and SAE-guided is not, with both values
    (one draw: read a gap of one fact as a tie)."""

    def cell(name: str, column: str) -> str:
        v = methods[name].get(column, float("nan"))
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    beaten = [
        f"`{c}` ({', '.join(f'{n} {cell(n, c)}' for n in sorted(best[c]))} vs {cell(METHOD, c)})"
        for c in cols
        if best[c] and METHOD not in best[c]
    ]
    if not beaten:
        return f"{METHOD} is best (or tied) in every column."
    return f"Where another method beats {METHOD} on this draw: " + "; ".join(beaten) + "."


def tradeoff_plot(methods: dict[str, dict], path: Path, sweeps: dict[str, list[dict]] | None = None) -> Path:
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    colors = {}
    for name, m in methods.items():
        colors[name] = ax.scatter(
            m["forget_recall_after"], m["retain_recall_after"], s=60, label=name, zorder=3
        ).get_facecolor()[0]
    for name, points in (sweeps or {}).items():
        pts = sorted(points, key=lambda p: p["forget_recall_after"])
        ax.plot(
            [p["forget_recall_after"] for p in pts],
            [p["retain_recall_after"] for p in pts],
            "--o",
            ms=3,
            alpha=0.6,
            color=colors.get(name),
        )
    first = next(iter(methods.values()))
    ax.axvline(first["unknown_recall"], color="red", ls=":", label="unknown entities")
    if "unknown_recall_same_prompts" in first:
        ax.axvline(first["unknown_recall_same_prompts"], color="orange", ls="--", label="unknown names, same prompts")
    ax.scatter(first["forget_recall_before"], first["retain_recall_before"], marker="x", color="k", label="before")
    ax.set_xlabel("forget recall after (goal: the unknown level)")
    ax.set_ylabel("retain recall after (higher is better)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
