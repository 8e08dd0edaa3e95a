"""The ``sae-unlearn`` command line: parse, validate, call the pipeline. Nothing else lives here."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.console import Console
from rich.table import Table

from sae_unlearn.config import DemoConfig, dump_config, load_config
from sae_unlearn.errors import NonFiniteLossError, UserInputError

app = typer.Typer(add_completion=False, help="SAE-guided entity unlearning: make a model forget chosen entities.")
console = Console(stderr=True, soft_wrap=True)

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config (see docs/config.md); flags override it.")
OutOpt = typer.Option(..., "--out", "-o", help="Output directory (refused if it exists and is not empty).")
OverwriteOpt = typer.Option(False, "--overwrite", help="Replace an existing output directory.")


def _config(config: Optional[Path], **flags) -> DemoConfig:
    return load_config(config, {k.replace("__", "."): v for k, v in flags.items()})


def _fail(exc: Exception) -> None:
    console.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(2)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Bad input ends the command with its message and exit code 2, never a traceback."""
    try:
        yield
    except (UserInputError, NonFiniteLossError) as exc:
        _fail(exc)


def _summary(metrics: dict) -> None:
    table = Table(title="sae-unlearn results")
    keys = ["forget_recall_before", "forget_recall_after", "unknown_recall", "retain_recall_before", "retain_recall_after",
            "heldout_known_recall_before", "heldout_known_recall_after", "forget_classified_unknown_after",
            "perplexity_before", "perplexity_after", "seconds"]
    table.add_column("metric")
    for name in metrics["methods"]:
        table.add_column(name)
    for key in keys:
        table.add_row(key, *(f"{m.get(key, float('nan')):.3f}" for m in metrics["methods"].values()))
    Console().print(table)


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")


@app.command()
def demo(
    synthetic: bool = typer.Option(True, "--synthetic/--no-synthetic", help="Run on the built-in synthetic world."),
    out: Path = OutOpt,
    config: Optional[Path] = ConfigOpt,
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the world and of the run."),
    layer: Optional[int] = typer.Option(None, "--layer", help="Decoder block whose output the SAE reads."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Unlearning step budget."),
    n_forget: Optional[int] = typer.Option(None, "--n-forget", help="Number of random known targets."),
    forget: Optional[str] = typer.Option(None, "--forget", help="Comma-separated target names."),
    overwrite: bool = OverwriteOpt,
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Run the whole chain on the synthetic world and write metrics.json, report.md, plots and the model."""
    from sae_unlearn.pipeline import run_demo

    if not synthetic:
        _fail(UserInputError("demo runs on the synthetic world only; use `sae-unlearn run` for real models (issue 4)."))
    with _user_errors():
        cfg = _config(config, seed=seed, world__seed=seed, layer=layer, unlearn__steps=steps, unlearn__n_forget=n_forget,
                      unlearn__forget=[s.strip() for s in forget.split(",") if s.strip()] if forget else None)
        metrics = run_demo(cfg, out, overwrite=overwrite, progress=not quiet)
    _summary(metrics)
    console.print(f"[green]wrote[/] {out}/metrics.json, {out}/report.md, {out}/model")


@app.command()
def compare(
    synthetic: bool = typer.Option(True, "--synthetic/--no-synthetic", help="Run on the built-in synthetic world."),
    out: Path = OutOpt,
    config: Optional[Path] = ConfigOpt,
    seed: Optional[int] = typer.Option(None, "--seed"),
    layer: Optional[int] = typer.Option(None, "--layer"),
    steps: Optional[int] = typer.Option(None, "--steps", help="Step budget, the same for every method."),
    methods: Optional[str] = typer.Option(None, "--methods", help="Comma-separated subset (default: all six)."),
    save_models: bool = typer.Option(False, "--save-models", help="Also save every unlearned model."),
    sweep: bool = typer.Option(False, "--sweep", help="Also a curve per method over its main hyperparameter."),
    overwrite: bool = OverwriteOpt,
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """Every method from the same original weights, same data, budget and evaluation:
    compare.json, compare.md and a trade-off plot."""
    from sae_unlearn.pipeline import ALL_METHODS, run_compare

    if not synthetic:
        _fail(UserInputError("compare runs on the synthetic world only for now; real models come with `run` (issue 4)."))
    with _user_errors():
        cfg = _config(config, seed=seed, world__seed=seed, layer=layer, unlearn__steps=steps)
        chosen = tuple(m.strip() for m in methods.split(",")) if methods else ALL_METHODS
        metrics = run_compare(cfg, out, overwrite=overwrite, progress=not quiet, methods=chosen, save_models=save_models,
                              sweep=sweep)
    _summary(metrics)
    console.print(f"[green]wrote[/] {out}/compare.json, {out}/compare.md, {out}/plots/tradeoff.png")


def _stage(config: Optional[Path], out: Path, overwrite: bool, seed: Optional[int], layer: Optional[int]):
    from sae_unlearn.io_utils import atomic_write_text, prepare_output_dir

    cfg = _config(config, seed=seed, world__seed=seed, layer=layer)
    out = prepare_output_dir(out, overwrite)
    atomic_write_text(out / "config.yaml", dump_config(cfg))
    return cfg, out


SeedOpt = typer.Option(None, "--seed")
LayerOpt = typer.Option(None, "--layer")


@app.command("world")
def world_cmd(out: Path = OutOpt, config: Optional[Path] = ConfigOpt, seed: Optional[int] = SeedOpt,
              layer: Optional[int] = LayerOpt, overwrite: bool = OverwriteOpt) -> None:
    """Build the synthetic world and its trained model (cached); write entities.jsonl and corpus.txt."""
    from sae_unlearn.io_utils import atomic_write_json, atomic_write_text
    from sae_unlearn.pipeline import build_synthetic

    with _user_errors():
        cfg, out = _stage(config, out, overwrite, seed, layer)
        ws = build_synthetic(cfg)
    assert ws.world is not None
    lines = [dict(e.to_dict(), split=s) for s, group in (("known", ws.world.known), ("obscure", ws.world.obscure),
                                                        ("unknown", ws.world.unknown)) for e in group]
    import json

    atomic_write_text(out / "entities.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
    atomic_write_text(out / "corpus.txt", "\n".join(ws.world.corpus) + "\n")
    atomic_write_json(out / "world.json", {"model_dir": str(ws.model_dir), "layer": ws.layer})
    console.print(f"world model at {ws.model_dir}; entities in {out}/entities.jsonl")


@app.command("capture")
def capture_cmd(out: Path = OutOpt, config: Optional[Path] = ConfigOpt, seed: Optional[int] = SeedOpt,
                layer: Optional[int] = LayerOpt, overwrite: bool = OverwriteOpt) -> None:
    """Capture residual activations at the layer (entity last tokens and all corpus tokens)."""
    from safetensors.torch import save_file

    from sae_unlearn.io_utils import atomic_save_dir
    from sae_unlearn.methods.base import encode_facts
    from sae_unlearn.models.capture import capture_entity_activations
    from sae_unlearn.pipeline import build_synthetic, capture_training_activations, sae_training_texts

    with _user_errors():
        cfg, out = _stage(config, out, overwrite, seed, layer)
        ws = build_synthetic(cfg)
    assert ws.world is not None
    tensors = {"all_tokens": capture_training_activations(ws, sae_training_texts(ws)).contiguous()}
    for split in ("known", "unknown", "obscure"):
        enc = encode_facts(ws.tokenizer, getattr(ws.world, split), heldout=None)
        tensors[f"entity_last_{split}"] = capture_entity_activations(ws.model, enc, ws.layer, progress=True).contiguous()
    atomic_save_dir(out / "activations", lambda tmp: save_file(tensors, str(tmp / "activations.safetensors")))
    console.print(f"wrote {out}/activations/activations.safetensors ({', '.join(f'{k}: {tuple(v.shape)}' for k, v in tensors.items())})")


@app.command("train-sae")
def train_sae_cmd(out: Path = OutOpt, config: Optional[Path] = ConfigOpt, seed: Optional[int] = SeedOpt,
                  layer: Optional[int] = LayerOpt, overwrite: bool = OverwriteOpt) -> None:
    """Train (or reuse from the cache) the SAE at the layer; copy it to OUT/sae in sae-lens format."""
    from sae_unlearn.pipeline import build_synthetic, get_sae
    from sae_unlearn.sae.training import save_sae

    with _user_errors():
        cfg, out = _stage(config, out, overwrite, seed, layer)
        ws = get_sae(build_synthetic(cfg))
    save_sae(ws.sae, out / "sae")
    console.print(f"SAE (sae-lens format) in {out}/sae")


@app.command("select-latents")
def select_latents_cmd(out: Path = OutOpt, config: Optional[Path] = ConfigOpt, seed: Optional[int] = SeedOpt,
                       layer: Optional[int] = LayerOpt, overwrite: bool = OverwriteOpt) -> None:
    """Separation scores of every latent (known vs unknown); write the top ones to latents.json."""
    from sae_unlearn.io_utils import atomic_write_json
    from sae_unlearn.pipeline import build_synthetic, get_sae, make_split, select_latents

    with _user_errors():
        cfg, out = _stage(config, out, overwrite, seed, layer)
        ws = select_latents(make_split(get_sae(build_synthetic(cfg))))
    assert ws.scores is not None
    atomic_write_json(out / "latents.json", ws.scores.table(cfg.latents.top_k))
    console.print(f"wrote {out}/latents.json")


@app.command("unlearn")
def unlearn_cmd(out: Path = OutOpt, config: Optional[Path] = ConfigOpt, seed: Optional[int] = SeedOpt,
                layer: Optional[int] = LayerOpt, steps: Optional[int] = typer.Option(None, "--steps"),
                method: Optional[str] = typer.Option(None, "--method"), overwrite: bool = OverwriteOpt) -> None:
    """Unlearn and evaluate (the demo's chain with a config); same outputs as the demo."""
    from sae_unlearn.pipeline import run_demo

    with _user_errors():
        cfg = _config(config, seed=seed, world__seed=seed, layer=layer, unlearn__steps=steps, unlearn__method=method)
        metrics = run_demo(cfg, out, overwrite=overwrite, methods=(cfg.unlearn.method,))
    _summary(metrics)


@app.command("evaluate")
def evaluate_cmd(model: Path = typer.Option(..., "--model", help="An unlearned model directory (save_pretrained)."),
                 out: Path = OutOpt, config: Optional[Path] = ConfigOpt, seed: Optional[int] = SeedOpt,
                 layer: Optional[int] = LayerOpt, overwrite: bool = OverwriteOpt) -> None:
    """Evaluate a saved unlearned model against the original world model (config must match the run's)."""
    from sae_unlearn.io_utils import atomic_write_json
    from sae_unlearn.methods.base import UnlearnOutcome
    from sae_unlearn.models.loading import load_causal_lm
    from sae_unlearn.pipeline import build_synthetic, evaluate, get_sae, make_split, select_latents

    with _user_errors():
        cfg, out = _stage(config, out, overwrite, seed, layer)
        if not (model / "config.json").exists():
            raise UserInputError(f"{model} is not a saved model directory (no config.json).")
        ws = select_latents(make_split(get_sae(build_synthetic(cfg))))
        edited, _ = load_causal_lm(model, device=cfg.device)
    metrics = evaluate(ws, edited, UnlearnOutcome(0, "no_training"))
    atomic_write_json(out / "metrics.json", {"model": str(model), "methods": {"evaluated": metrics}})
    _summary({"methods": {"evaluated": metrics}})

