"""The files of a run: metrics.json, latents.json, config.yaml, plots, report.md/.html and the edited models."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from sae_unlearn import parallel
from sae_unlearn.config import dump_config
from sae_unlearn.evaluation.evaluate import eval_facts
from sae_unlearn.io_utils import atomic_save_dir, atomic_write_json, atomic_write_text
from sae_unlearn.methods import UnlearnOutcome, sharding
from sae_unlearn.models.generation import greedy_continuations
from sae_unlearn.models.layers import CausalLM
from sae_unlearn.models.portable import ADAPTER_CONFIG, record_base
from sae_unlearn.state import Workspace


def save_model_dir(model: CausalLM, tokenizer, target: Path, base: tuple[str | None, Path] | None = None) -> Path:
    """``base``: the run's model name as given and its local directory, recorded portably in an adapter."""

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if base is not None and (tmp / ADAPTER_CONFIG).is_file():
            record_base(tmp, *base)

    return atomic_save_dir(target, write)


def write_run_outputs(
    out: Path,
    ws: Workspace,
    results: dict[str, tuple[dict, UnlearnOutcome]],
    edited: dict[str, nn.Module],
    preface: str = "",
) -> dict:
    """metrics.json, latents.json, config.yaml, plots, and the report as report.md and report.html;
    ``preface`` (Markdown, e.g. the comparison table) opens the report."""
    from sae_unlearn.report.figures import attack_figures, run_figures
    from sae_unlearn.report.html import render_html
    from sae_unlearn.report.markdown import write_report

    assert ws.split is not None and ws.scores is not None
    metrics = {
        "model": str(ws.model_dir),
        "layer": ws.layer,
        "seed": ws.cfg.seed,  # the draw (targets, split; the synthetic world has its own seed in config.yaml)
        "sae": str(ws.sae_dir),
        # the SAE on the entities' last tokens (sae/quality.py): l0, l0_share, explained_variance, alive_share
        "sae_quality": ws.sae_quality,
        "forget": [e.name for e in ws.split.forget],
        "skipped_forget": ws.skipped_forget,
        # per target: [training facts the original model recalled, training facts] (issue 21)
        "forget_known_facts": {n: list(c) for n, c in ws.forget_known_facts.items()},
        # --name-only: per name, the type read off the model and the facts it gave (what the losses saw)
        "name_only_targets": {
            d.name: {"type": d.type, "facts": [[f.prompt, f.answer] for f in d.facts]} for d in ws.described
        },
        "n_known": ws.n_known,
        "n_facts_answerable": sum(f.answerable for e in ws.candidates for f in e.facts),
        "known_all_answerable": ws.all_answerable,
        "n_candidates": len(ws.candidates),
        "n_retain": len(ws.split.retain),
        "n_heldout_known": len(ws.split.heldout_known),
        "n_unknown_eval": len(ws.unknown_eval),
        "max_scored_entities": ws.cfg.eval.max_scored_entities,
        "timings": ws.timings,
        "processes": parallel.num_processes(),
        "fsdp": sharding.fsdp_launched(),
        "methods": {name: m for name, (m, _) in results.items()},
    }
    plots = run_figures(out, ws.evaluation, results, edited)
    prompts = [f.prompt for f in eval_facts(ws.evaluation, ws.split.forget[:5])][:8]
    samples = [
        {"prompt": p, "before": b.strip()}
        for p, b in zip(prompts, greedy_continuations(ws.model, ws.tokenizer, prompts, 8))
    ]
    for name, model in edited.items():
        with results[name][1].context(model):
            for row, text in zip(samples, greedy_continuations(model, ws.tokenizer, prompts, 8)):
                row[name] = text.strip()
    notes = [
        f"model: `{ws.model_dir}`, layer {ws.layer}, SAE: `{ws.sae_dir}`" + _quality_note(ws),
        f"{len(ws.split.forget)} targets: {', '.join(e.name for e in ws.split.forget)}",
        f"retain set (in the loss) {len(ws.split.retain)} entities; held-out known (never in any loss) "
        f"{len(ws.split.heldout_known)}; unknown entities for evaluation {len(ws.unknown_eval)}"
        + (
            f" (recall scored on a seeded sample of at most {k} of each)"
            if (k := ws.cfg.eval.max_scored_entities)
            else ""
        ),
        (
            "recall is on held-out phrasings (never in training or in any unlearning loss): questions, passing "
            "mentions in a longer sentence, and the name with an aside (`*_train_phrasing_*`: the cloze statements "
            "the losses train on; `forget_recall_form_*`: each held-out phrasing alone)"
            if ws.world is None
            else "recall is on held-out phrasings (never in training or in the unlearning loss)"
        )
        if ws.eval_heldout
        else "recall is on all facts of the entity file (held-out phrasings are off; docs/real_models.md)",
    ]
    partial = {n: c for n, c in ws.forget_known_facts.items() if c[0] < c[1]}
    if partial:
        notes.append(
            "targets known in part (facts recalled of their training facts, original model): "
            + ", ".join(f"{n} {k}/{t}" for n, (k, t) in partial.items())
        )
    if ws.answerable_checked:
        notes.append(
            f"{metrics['n_facts_answerable']} facts of known entities are completed for made-up names too "
            "(they test the prompt, not the entity) and are left out of recall and of known/unknown "
            f"({len(ws.all_answerable)} entities had no other fact); `forget_recall_all_facts` keeps them "
            "(docs/metrics.md)"
        )
    if ws.skipped_forget:
        notes.append(f"skipped (not known to the model, nothing to forget): {', '.join(ws.skipped_forget)}")
    if ws.described:
        notes.append(
            "name-only: the losses saw only what the model says about each name ("
            + "; ".join(f"{d.name}: a {d.type}, {len(d.facts)} facts" for d in ws.described if d.known)
            + "); recall reads the entity file's held-out phrasings of the names it has"
        )
    if ws.probing:
        notes.append(
            f"probing: {metrics['n_known']} of {len(ws.candidates)} entities known "
            f"(recall >= {ws.cfg.eval.known_threshold:.0%} of their facts)"
        )
    for name, (_, outcome) in results.items():
        notes.append(
            f"{name}: {outcome.steps_run} steps, stopped by {outcome.stopped_reason}. {outcome.message}".strip()
        )
    latent_rows = ws.scores.table(ws.cfg.latents.top_k)
    atomic_write_json(out / "latents.json", latent_rows)
    atomic_write_json(out / "metrics.json", metrics)
    panels = attack_figures(out, {name: m for name, (m, _) in results.items()})
    report = write_report(out, "sae-unlearn report", metrics, plots, latent_rows, samples, notes, preface, panels)
    atomic_write_text(out / "report.md", report)
    atomic_write_text(out / "report.html", render_html(report, out, "sae-unlearn report"))
    atomic_write_text(out / "config.yaml", dump_config(ws.cfg))
    return metrics


def save_edited(out: Path, ws: Workspace, results: dict, edited: dict[str, nn.Module]) -> None:
    for name, model in edited.items():
        target = out / ("model" if len(edited) == 1 else f"model_{name}")
        outcome = results[name][1]
        if outcome.inference_spec is not None:  # an inference-time method: the weights are unchanged
            atomic_write_json(out / f"{name}_inference_hook.json", outcome.inference_spec | {"sae": str(ws.sae_dir)})
        else:
            save_model_dir(model, ws.tokenizer, target, base=(ws.cfg.model.name, ws.model_dir))


def _quality_note(ws: Workspace) -> str:
    q = ws.sae_quality
    if not q:
        return ""
    return (
        f" ({q['l0']:.0f} of its latents active per entity token, explained variance {q['explained_variance']:.2f}, "
        f"{100 * q['alive_share']:.0f} % of latents fire on some entity)"
    )
