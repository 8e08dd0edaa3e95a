"""Every figure of a run's report, from the evaluation context and the edited models (PNG under OUT/plots)."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from sae_unlearn.attacks.suite import RELEARNING
from sae_unlearn.context import EvaluationContext
from sae_unlearn.methods import UnlearnOutcome
from sae_unlearn.metrics.alignment import entity_codes
from sae_unlearn.metrics.registry import ATTACKS, REGISTRY
from sae_unlearn.report.attack_plots import attack_bars, knownness_histograms, projection_plot, relearn_curves
from sae_unlearn.report.plots import latent_activation_plot, loss_curve, recall_bars


def run_figures(
    out: Path, ctx: EvaluationContext, results: dict[str, tuple[dict, UnlearnOutcome]], edited: dict[str, nn.Module]
) -> list[tuple[str, str]]:
    """(caption, path relative to ``out``) of every figure, in reading order."""
    plots_dir = out / "plots"
    plots_dir.mkdir(exist_ok=True)
    methods = {name: m for name, (m, _) in results.items()}
    rel = lambda p: str(Path(p).relative_to(out))  # noqa: E731
    figures = [("QA recall before and after", rel(recall_bars(methods, plots_dir / "recall.png")))]

    k = ctx.cfg.latents.top_k
    known_latents, unknown_latents = ctx.scores.top_known(k), ctx.scores.top_unknown(k)
    codes = lambda model, entities: entity_codes(model, ctx.tokenizer, ctx.sae, entities, ctx.layer)[0]  # noqa: E731
    original = ctx.original_codes  # from the original model's evaluation, when it ran in this process
    z_known, z_unk, z_before = (
        (original["known"], original["unknown"], original["forget"])
        if original
        else (
            codes(ctx.model, ctx.split.other_known),
            codes(ctx.model, ctx.unknown_eval),
            codes(ctx.model, ctx.split.forget),
        )
    )
    z_after = {}
    for name, model in edited.items():
        with results[name][1].context(model):  # an inference-time edit is part of the model
            z_after[name] = codes(model, ctx.split.forget)
    score = lambda z: (z[:, known_latents].mean(1) - z[:, unknown_latents].mean(1)).numpy()  # noqa: E731
    reference = {"known": score(z_known), "unknown": score(z_unk), "targets before": score(z_before)}
    figures.append(
        (
            "Known-entity latent score per prompt: targets before and after, against known and unknown entities",
            rel(
                knownness_histograms(
                    reference, {n: score(z) for n, z in z_after.items()}, plots_dir / "latent_histograms.png"
                )
            ),
        )
    )
    figures.append(
        (
            "Entity activations in SAE latent space (2-D PCA of the original model's codes)",
            rel(
                projection_plot(
                    z_known.numpy(),
                    z_unk.numpy(),
                    z_before.numpy(),
                    {n: z.numpy() for n, z in z_after.items()},
                    plots_dir / "projection.png",
                )
            ),
        )
    )

    latents = known_latents + unknown_latents
    for name, z in z_after.items():
        acts = {
            "known": z_known[:, latents].mean(0).numpy(),
            "unknown": z_unk[:, latents].mean(0).numpy(),
            "targets before": z_before[:, latents].mean(0).numpy(),
            "targets after": z[:, latents].mean(0).numpy(),
        }
        path = latent_activation_plot(
            latents,
            acts,
            plots_dir / f"latents_{name}.png",
            f"{name}: top {k} known-entity latents, then top {k} unknown-entity latents",
        )
        figures.append((f"Latent activations ({name})", rel(path)))
        outcome = results[name][1]
        if outcome.loss_history:
            path = loss_curve(outcome.loss_history, plots_dir / f"loss_{name}.png", outcome.loss_terms)
            figures.append((f"Unlearning loss and its weighted terms ({name})", rel(path)))
    return figures


def attack_figures(out: Path, methods: dict[str, dict]) -> dict[str, str]:
    """Each attack's panel plot (path relative to ``out``), by attack name: the relearning curves for relearning,
    bars of every ranked metric of the attack for the others (``attack_bars``)."""
    plots_dir = out / "plots"
    plots_dir.mkdir(exist_ok=True)
    records = list(methods.values())
    figures = {}
    for attack in ATTACKS:
        if attack == RELEARNING:
            if any(m.get("relearn_curve") for m in records):
                figures[attack] = str(relearn_curves(methods, plots_dir / "relearn.png").relative_to(out))
            continue
        bars = []
        for metric in REGISTRY.values():
            if metric.attack != attack or metric.scope == "floor" or metric.better is None:
                continue
            key = f"{metric.key}_after" if metric.scope == "state" else metric.key
            before = f"{metric.key}_before" if metric.scope == "state" and "before" in metric.rows else None
            floor = metric.floors[0] if metric.floors else metric.better if isinstance(metric.better, float) else None
            if any(key in m for m in records):
                bars.append((metric.label, key, before, floor))
        if bars:
            path = plots_dir / f"attack_{attack.replace(' ', '_')}.png"
            figures[attack] = str(attack_bars(methods, bars, path).relative_to(out))
    return figures
