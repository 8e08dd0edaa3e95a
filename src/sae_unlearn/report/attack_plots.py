"""Plots of the internals and of the attacks: where the targets' activations went, and whether
relearning brings them back."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402

REFERENCE_COLORS = {"known": "#7f7f7f", "unknown": "#d62728", "targets before": "#1f77b4"}
AFTER_COLOR = "#2ca02c"


def _grid(n: int, width: float = 4.0, height: float = 3.2):
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def knownness_histograms(reference: dict[str, np.ndarray], after: dict[str, np.ndarray], path: Path) -> Path:
    """Per method: the distribution of a per-prompt "known-entity" latent score (mean of the selected
    known latents minus mean of the unknown ones) for known and unknown entities and for the targets
    before and after. Forgetting moves the green histogram onto the red one."""
    fig, axes = _grid(len(after))
    values = np.concatenate(list(reference.values()) + list(after.values()))
    bins = np.linspace(values.min(), values.max() + 1e-6, 30)
    for ax, (name, z_after) in zip(axes, after.items()):
        for label, v in reference.items():
            ax.hist(v, bins=bins, alpha=0.45, density=True, label=label, color=REFERENCE_COLORS.get(label))
        ax.hist(z_after, bins=bins, alpha=0.6, density=True, label="targets after", color=AFTER_COLOR)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("known-latent score")
        ax.legend(fontsize=6)
    return _save(fig, path)


def projection_plot(
    known: np.ndarray, unknown: np.ndarray, before: np.ndarray, after: dict[str, np.ndarray], path: Path
) -> Path:
    """PCA fitted on the original model's known and unknown codes; per method, the targets before
    (blue) and after (green), with an arrow from each target's mean before to its mean after."""
    pca = PCA(n_components=2, random_state=0).fit(np.concatenate([known, unknown]))
    k2, u2, b2 = pca.transform(known), pca.transform(unknown), pca.transform(before)
    fig, axes = _grid(len(after))
    for ax, (name, z_after) in zip(axes, after.items()):
        a2 = pca.transform(z_after)
        ax.scatter(*k2.T, s=6, alpha=0.35, color=REFERENCE_COLORS["known"], label="known")
        ax.scatter(*u2.T, s=6, alpha=0.35, color=REFERENCE_COLORS["unknown"], label="unknown")
        ax.scatter(*b2.T, s=10, color=REFERENCE_COLORS["targets before"], label="targets before")
        ax.scatter(*a2.T, s=10, color=AFTER_COLOR, label="targets after")
        ax.annotate("", xy=a2.mean(0), xytext=b2.mean(0), arrowprops={"arrowstyle": "->", "lw": 1.5})
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=6)
    return _save(fig, path)


def relearn_curves(methods: dict[str, dict], path: Path) -> Path:
    """Recall of the held-back facts during the relearning attack, per method, with the same attack
    on the original model (ceiling) and on unknown entities (floor)."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    first = next(iter(methods.values()))
    for key, label, style in (
        ("relearn_curve_original", "original model", "k--"),
        ("relearn_curve_unknown", "unknown entities (floor)", "r:"),
    ):
        curve = first.get(key, [])
        ax.plot([p["step"] for p in curve], [p["recall"] for p in curve], style, label=label)
    for name, m in methods.items():
        curve = m.get("relearn_curve", [])
        ax.plot([p["step"] for p in curve], [p["recall"] for p in curve], "-o", ms=3, label=name)
    ax.set_xlabel("attack step (fine-tuning on part of the targets' facts)")
    ax.set_ylabel("recall of the other facts")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)
    return _save(fig, path)


def attack_bars(
    methods: dict[str, dict], bars: list[tuple[str, str, str | None, str | float | None]], path: Path
) -> Path:
    """One attack's panel: per metric (``bars``: label, key, key of the original model's value, floor: a key or a
    value such as 0.5 for an AUC), a bar per method, the original model as a black tick and the floor (what an
    unknown entity scores) as a red dashed tick: a method has resisted the attack when its bar sits on the floor."""
    names = list(methods)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(bars) + 0.25 * len(names) * len(bars)), 3.8))
    width = 0.8 / max(1, len(names))
    first = next(iter(methods.values()))
    labelled: set[str] = set()

    def label(what: str) -> str | None:  # each legend entry once
        if what in labelled:
            return None
        labelled.add(what)
        return what

    for b, (_, key, before_key, floor) in enumerate(bars):
        for i, name in enumerate(names):
            value = methods[name].get(key)
            if isinstance(value, (int, float)):
                ax.bar(b - 0.4 + width * (i + 0.5), value, width, color=f"C{i}", label=label(name))
        marks = (
            (first.get(before_key) if before_key else None, "k-", "original model"),
            (first.get(floor) if isinstance(floor, str) else floor, "r--", "floor (unknown entities; AUC: 0.5)"),
        )
        for level, style, what in marks:
            if isinstance(level, (int, float)):
                ax.plot([b - 0.45, b + 0.45], [level, level], style, lw=2, label=label(what))
    ax.set_xticks(range(len(bars)), [textwrap.fill(label, 24) for label, *_ in bars], fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path)
