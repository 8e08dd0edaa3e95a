"""PNG plots for the report (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def recall_bars(method_metrics: dict[str, dict], path: Path) -> Path:
    groups = [
        ("forget", "forget_recall_before", "forget_recall_after"),
        ("retain", "retain_recall_before", "retain_recall_after"),
        ("held-out known", "heldout_known_recall_before", "heldout_known_recall_after"),
    ]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    names = list(method_metrics)
    width = 0.8 / (len(names) + 1)
    x = np.arange(len(groups) + 1)
    first = method_metrics[names[0]]
    ax.bar(x[:-1] - 0.4 + width / 2, [first[b] for _, b, _ in groups], width, label="before", color="#999")
    for i, name in enumerate(names):
        m = method_metrics[name]
        ax.bar(x[:-1] - 0.4 + width * (i + 1.5), [m[a] for _, _, a in groups], width, label=f"after: {name}")
    ax.bar(x[-1], first["unknown_recall"], width, color="#d62728", label="unknown entities")
    ax.set_xticks(x, [g for g, _, _ in groups] + ["unknown"])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("QA recall (held-out phrasings)")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def latent_activation_plot(latents: list[int], acts: dict[str, np.ndarray], path: Path, title: str) -> Path:
    """Mean activation of selected latents for known, unknown and targets before/after."""
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / len(acts)
    x = np.arange(len(latents))
    for i, (label, values) in enumerate(acts.items()):
        ax.bar(x - 0.4 + width * (i + 0.5), values, width, label=label)
    ax.set_xticks(x, [str(j) for j in latents], fontsize=7)
    ax.set_xlabel("SAE latent")
    ax.set_ylabel("mean activation")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def loss_curve(history: list[float], path: Path, terms: dict[str, list[float]] | None = None) -> Path:
    """The total loss and, when the method names them, each weighted term (they sum to the total)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.plot(history, color="k", lw=1.6, label="total")
    for name, values in (terms or {}).items():
        ax.plot(values, lw=0.9, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    every = [v for values in [history, *(terms or {}).values()] for v in values]
    ax.set_yscale("log" if min(every, default=1.0) > 0 else "symlog")  # GA and NPO losses go negative
    if terms:
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
