"""The ``sae-unlearn`` command line: parse, validate, call the run drivers (runs.py) and the stages. Nothing else lives here.

Longer than our ~300-line rule because each of the ten commands declares its flags with their help text (typer);
the commands hold no logic of their own.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.console import Console
from rich.table import Table

from sae_unlearn.config import DemoConfig, dump_config, load_config
from sae_unlearn.errors import NonFiniteLossError, UserInputError
from sae_unlearn.models.builtin import BUILTIN_MODELS

app = typer.Typer(add_completion=False, help="SAE-guided entity unlearning: make a model forget chosen entities.")
console = Console(stderr=True, soft_wrap=True)

DEMO_REAL_CONFIG = Path(__file__).parent / "data" / "smollm2_demo.yaml"  # the tuned SmolLM2 defaults
ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config (see docs/config.md); flags override it.")
OutOpt = typer.Option(..., "--out", "-o", help="Output directory (refused if it exists and is not empty).")
OverwriteOpt = typer.Option(False, "--overwrite", help="Replace an existing output directory.")
ResumeOpt = typer.Option(
    False,
    "--resume",
    help="Continue an interrupted run in --out from its last checkpoint (same command and config: same result).",
)


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


def _cell(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _summary(metrics: dict) -> None:
    from sae_unlearn.entities.phrasings import PHRASING_LABELS
    from sae_unlearn.metrics.registry import section_rows

    table = Table(title="sae-unlearn results")
    records = list(metrics["methods"].values())
    rows = [
        row
        for section in ("headline", "attacks")
        for row in section_rows(records, section, PHRASING_LABELS, only=lambda m: m.summary)
    ]
    table.add_column("metric")
    for name in metrics["methods"]:
        table.add_column(name)
    for key, _ in rows:
        table.add_row(key, *(_cell(m.get(key, float("nan"))) for m in records))
    Console().print(table)


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")


def _sae_overrides(sae: Optional[str], sae_id: Optional[str]) -> dict:
    """``--sae`` is a local sae-lens directory, ``RELEASE:ID`` or a release with ``--sae-id``."""
    if sae is None:
        return {}
    if Path(sae).exists():
        return {"sae__path": sae}
    if ":" in sae and sae_id is None:
        release, sae_id = sae.split(":", 1)
        return {"sae__release": release, "sae__sae_id": sae_id}
    if sae.startswith((".", "/", "~")):
        raise UserInputError(f"SAE directory {sae} does not exist.")
    if sae_id is None:
        raise UserInputError(
            f"--sae {sae!r} is neither a directory nor RELEASE:ID; give the SAE id with --sae-id "
            "(e.g. --sae gemma-scope-2b-pt-res-canonical --sae-id layer_12/width_16k/canonical)."
        )
    return {"sae__release": sae, "sae__sae_id": sae_id}


def _names(csv: Optional[str]) -> Optional[list[str]]:
    return [s.strip() for s in csv.split(",") if s.strip()] if csv else None


def _real_config(
    config: Optional[Path],
    model: Optional[str],
    sae: Optional[str],
    sae_id: Optional[str],
    entities: Optional[Path],
    forget: Optional[str],
    strict: Optional[bool],
    lora: Optional[bool],
    dtype: Optional[str],
    gradient_checkpointing: Optional[bool],
    device: Optional[str],
    **flags,
) -> DemoConfig:
    if config is None:  # a built-in model brings its tuned settings; a user's --config wins
        from sae_unlearn.models.builtin import builtin_config

        config = builtin_config(model)
    overrides = {
        "model__name": model,
        "entities__file": str(entities) if entities else None,
        "unlearn__forget": _names(forget),
        "entities__strict": strict,
        "model__lora": lora,
        "model__dtype": dtype,
        "model__gradient_checkpointing": gradient_checkpointing,
        "device": device,
    }
    return _config(config, **overrides, **_sae_overrides(sae, sae_id), **flags)


ModelOpt = typer.Option(
    None, "--model", "-m", help=f"Hub id, local model directory or built-in name ({', '.join(BUILTIN_MODELS)})."
)
SAEOpt = typer.Option(
    None,
    "--sae",
    help="sae-lens SAE: a local directory, RELEASE:ID, or a release with --sae-id. "
    "Omitted: train one on the model (cached).",
)
SAEIdOpt = typer.Option(None, "--sae-id", help="SAE id inside the --sae release.")
EntitiesOpt = typer.Option(None, "--entities", "-e", help="Entity JSONL file (default: the bundled real entities).")
ForgetOpt = typer.Option(None, "--forget", help="Comma-separated entity names to forget.")
NameOnlyOpt = typer.Option(
    None,
    "--name-only/--with-facts",
    help="Forget the --forget names from what the model itself says about them; the entity "
    "file's facts of those names are used only to evaluate (a name need not be in it).",
)
StrictOpt = typer.Option(
    None, "--strict/--no-strict", help="Stop (instead of skipping) when a forget entity is unknown to the model."
)
LoraOpt = typer.Option(None, "--lora/--full", help="Train a LoRA adapter (peft) instead of full weights.")
DtypeOpt = typer.Option(None, "--dtype", help="float32 or bfloat16.")
CkptOpt = typer.Option(None, "--gradient-checkpointing/--no-gradient-checkpointing", help="Trade compute for memory.")
DeviceOpt = typer.Option(None, "--device", help="cpu, cuda or auto.")


@app.command()
def demo(
    synthetic: bool = typer.Option(False, "--synthetic/--real", help="The synthetic world instead of SmolLM2-135M."),
    out: Path = OutOpt,
    config: Optional[Path] = ConfigOpt,
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the world and of the run."),
    layer: Optional[int] = typer.Option(None, "--layer", help="Decoder block whose output the SAE reads."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Unlearning step budget."),
    n_forget: Optional[int] = typer.Option(None, "--n-forget", help="Number of random known targets."),
    forget: Optional[str] = typer.Option(None, "--forget", help="Comma-separated target names."),
    device: Optional[str] = DeviceOpt,
    overwrite: bool = OverwriteOpt,
    resume: bool = ResumeOpt,
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """The whole chain, offline: SmolLM2-135M (built in) on the bundled real entities, or with
    --synthetic the synthetic world. Writes metrics.json, report.md, plots and the model."""
    from sae_unlearn.runs import run_demo

    with _user_errors():
        flags = dict(
            seed=seed,
            layer=layer,
            unlearn__steps=steps,
            unlearn__n_forget=n_forget,
            unlearn__forget=_names(forget),
            device=device,
        )
        if synthetic:
            cfg = _config(config, world__seed=seed, **flags)
        else:
            cfg = _config(config or DEMO_REAL_CONFIG, **flags)
        metrics = run_demo(cfg, out, overwrite=overwrite, progress=not quiet, resume=resume)
    _summary(metrics)
    console.print(f"[green]wrote[/] {out}/metrics.json, {out}/report.md, {out}/model")


@app.command()
def run(
    out: Path = OutOpt,
    model: Optional[str] = ModelOpt,
    sae: Optional[str] = SAEOpt,
    sae_id: Optional[str] = SAEIdOpt,
    entities: Optional[Path] = EntitiesOpt,
    forget: Optional[str] = ForgetOpt,
    config: Optional[Path] = ConfigOpt,
    n_forget: Optional[int] = typer.Option(None, "--n-forget", help="Random known targets when --forget is not given."),
    method: Optional[str] = typer.Option(None, "--method", help="sae_guided (default) or a baseline."),
    layer: Optional[int] = typer.Option(
        None, "--layer", help="Decoder block whose output the SAE reads (default: middle)."
    ),
    steps: Optional[int] = typer.Option(None, "--steps", help="Unlearning step budget."),
    seed: Optional[int] = typer.Option(None, "--seed"),
    strict: Optional[bool] = StrictOpt,
    name_only: Optional[bool] = NameOnlyOpt,
    lora: Optional[bool] = LoraOpt,
    dtype: Optional[str] = DtypeOpt,
    gradient_checkpointing: Optional[bool] = CkptOpt,
    device: Optional[str] = DeviceOpt,
    overwrite: bool = OverwriteOpt,
    resume: bool = ResumeOpt,
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """Probe which entities the model knows, select latents, unlearn the targets and evaluate, on any
    Hugging Face causal LM; same outputs as the demo."""
    from sae_unlearn.runs import run_demo

    with _user_errors():
        cfg = _real_config(
            config,
            model,
            sae,
            sae_id,
            entities,
            forget,
            strict,
            lora,
            dtype,
            gradient_checkpointing,
            device,
            seed=seed,
            layer=layer,
            unlearn__steps=steps,
            unlearn__n_forget=n_forget,
            unlearn__method=method,
            unlearn__name_only=name_only,
        )
        if cfg.model.name is None:
            raise UserInputError(
                f"No model given: pass --model (hub id, directory or {' / '.join(BUILTIN_MODELS)}) or set model.name "
                "in the --config file. For the synthetic world use `sae-unlearn demo --synthetic`."
            )
        metrics = run_demo(
            cfg, out, overwrite=overwrite, progress=not quiet, methods=(cfg.unlearn.method,), resume=resume
        )
    _summary(metrics)
    console.print(f"[green]wrote[/] {out}/metrics.json, {out}/report.md, {out}/model")


@app.command()
def compare(
    synthetic: bool = typer.Option(False, "--synthetic", help="Run on the built-in synthetic world."),
    out: Path = OutOpt,
    config: Optional[Path] = ConfigOpt,
    model: Optional[str] = ModelOpt,
    sae: Optional[str] = SAEOpt,
    sae_id: Optional[str] = SAEIdOpt,
    entities: Optional[Path] = EntitiesOpt,
    forget: Optional[str] = ForgetOpt,
    strict: Optional[bool] = StrictOpt,
    name_only: Optional[bool] = NameOnlyOpt,
    lora: Optional[bool] = LoraOpt,
    dtype: Optional[str] = DtypeOpt,
    gradient_checkpointing: Optional[bool] = CkptOpt,
    device: Optional[str] = DeviceOpt,
    seed: Optional[int] = typer.Option(None, "--seed"),
    layer: Optional[int] = typer.Option(None, "--layer"),
    steps: Optional[int] = typer.Option(None, "--steps", help="Step budget, the same for every method."),
    methods: Optional[str] = typer.Option(None, "--methods", help="Comma-separated subset (default: every method)."),
    save_models: bool = typer.Option(False, "--save-models", help="Also save every unlearned model."),
    sweep: bool = typer.Option(
        True,
        "--sweep/--no-sweep",
        help="The equal tuning budget (the default): every method at 3 values of its main setting, the value chosen "
        "on the validation split by one rule (docs/baselines.md) and reported in compare.md, a curve per method on "
        "the trade-off plot; about 3x the methods' time. --no-sweep: each method at its configured values.",
    ),
    tune: bool = typer.Option(False, "--tune", help="The old name of --sweep (on by default); kept for scripts."),
    settings_from: Optional[Path] = typer.Option(
        None,
        "--settings-from",
        help="A development comparison (its directory or compare.json): run each method at the value its sweep "
        "chose there, with no sweep here. Choose on one draw, report on others, at a third of the time.",
    ),
    seeds: Optional[int] = typer.Option(
        None,
        "--seeds",
        help="Repeat over N draws (seeds SEED..SEED+N-1: targets, split and, on the synthetic world, the world): "
        "compare_seeds.md/.json give each metric's mean, sd and 95 % bootstrap interval.",
    ),
    overwrite: bool = OverwriteOpt,
    resume: bool = ResumeOpt,
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """Every method from the same original weights, same data, budget and evaluation:
    compare.json, compare.md and a trade-off plot."""
    from sae_unlearn.runs import ALL_METHODS, run_compare
    from sae_unlearn.stages.tuning import settings_from as settings_from_run

    with _user_errors():
        if synthetic:
            cfg = _config(
                config,
                seed=seed,
                world__seed=seed,
                layer=layer,
                unlearn__steps=steps,
                unlearn__forget=_names(forget),
                device=device,
                attack__extended=True,  # a comparison runs every attack, whatever the run's config leaves out
            )
        else:
            cfg = _real_config(
                config,
                model,
                sae,
                sae_id,
                entities,
                forget,
                strict,
                lora,
                dtype,
                gradient_checkpointing,
                device,
                seed=seed,
                layer=layer,
                unlearn__steps=steps,
                unlearn__name_only=name_only,
                attack__extended=True,
            )
            # no model given (flag or config): the synthetic world, as with --synthetic
        if tune and not sweep:
            raise UserInputError("--tune and --no-sweep contradict each other: --tune is the sweep; keep one.")
        chosen = tuple(m.strip() for m in methods.split(",")) if methods else ALL_METHODS
        if tune and settings_from is not None:
            raise UserInputError(
                "--tune and --settings-from contradict each other: --settings-from runs the values chosen there, "
                "without a sweep; keep one."
            )
        settings = settings_from_run(settings_from, chosen, cfg) if settings_from is not None else None
        metrics = run_compare(
            cfg, out, overwrite, not quiet, chosen, save_models, sweep, resume, seeds, False, settings
        )
    if seeds is not None:
        console.print((out / "compare_seeds.md").read_text())
        console.print(
            f"[green]wrote[/] {out}/compare_seeds.json, {out}/compare_seeds.md and seed-<S>/ for each of {metrics['seeds']}"
        )
        return
    _summary(metrics)
    console.print(f"[green]wrote[/] {out}/compare.json, {out}/compare.md, {out}/plots/tradeoff.png")


@app.command("aggregate")
def aggregate_cmd(
    runs: list[Path] = typer.Argument(..., help="Finished `compare` runs (directories or compare.json), one per draw."),
    out: Path = OutOpt,
    overwrite: bool = OverwriteOpt,
) -> None:
    """Comparisons of different draws (run on other machines or days) combined as `compare --seeds N` would:
    compare_seeds.json/.md with each metric's mean, sd and 95 % bootstrap interval. Only the draw may differ."""
    from sae_unlearn.report.aggregate import aggregate

    with _user_errors():
        record = aggregate(runs, out, overwrite)
    console.print((out / "compare_seeds.md").read_text())
    console.print(f"[green]wrote[/] {out}/compare_seeds.json, {out}/compare_seeds.md (seeds {record['seeds']})")


def _stage(config: Optional[Path], out: Path, overwrite: bool, seed: Optional[int], layer: Optional[int]):
    from sae_unlearn.io_utils import atomic_write_text, prepare_output_dir

    cfg = _config(config, seed=seed, world__seed=seed, layer=layer)
    out = prepare_output_dir(out, overwrite)
    atomic_write_text(out / "config.yaml", dump_config(cfg))
    return cfg, out


SeedOpt = typer.Option(None, "--seed")
LayerOpt = typer.Option(None, "--layer")


@app.command("world")
def world_cmd(
    out: Path = OutOpt,
    config: Optional[Path] = ConfigOpt,
    seed: Optional[int] = SeedOpt,
    layer: Optional[int] = LayerOpt,
    overwrite: bool = OverwriteOpt,
) -> None:
    """Build the synthetic world and its trained model (cached); write entities.jsonl and corpus.txt."""
    from sae_unlearn.io_utils import atomic_write_json, atomic_write_text
    from sae_unlearn.stages.subject import build_synthetic

    with _user_errors():
        cfg, out = _stage(config, out, overwrite, seed, layer)
        ws = build_synthetic(cfg)
    assert ws.world is not None
    lines = [
        dict(e.to_dict(), split=s)
        for s, group in (("known", ws.world.known), ("obscure", ws.world.obscure), ("unknown", ws.world.unknown))
        for e in group
    ]
    import json

    atomic_write_text(out / "entities.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
    atomic_write_text(out / "corpus.txt", "\n".join(ws.world.corpus) + "\n")
    atomic_write_json(out / "world.json", {"model_dir": str(ws.model_dir), "layer": ws.layer})
    console.print(f"world model at {ws.model_dir}; entities in {out}/entities.jsonl")


@app.command("capture")
def capture_cmd(
    out: Path = OutOpt,
    config: Optional[Path] = ConfigOpt,
    seed: Optional[int] = SeedOpt,
    layer: Optional[int] = LayerOpt,
    overwrite: bool = OverwriteOpt,
) -> None:
    """Capture residual activations at the layer (entity last tokens and all corpus tokens)."""
    from safetensors.torch import save_file

    from sae_unlearn.io_utils import atomic_save_dir
    from sae_unlearn.models.capture import capture_entity_activations
    from sae_unlearn.models.prompts import encode_facts
    from sae_unlearn.stages.sae import capture_training_activations, sae_training_texts
    from sae_unlearn.stages.subject import build_synthetic

    with _user_errors():
        cfg, out = _stage(config, out, overwrite, seed, layer)
        ws = build_synthetic(cfg)
    assert ws.world is not None
    tensors = {"all_tokens": capture_training_activations(ws, sae_training_texts(ws)).contiguous()}
    for split in ("known", "unknown", "obscure"):
        enc = encode_facts(ws.tokenizer, getattr(ws.world, split), heldout=None)
        tensors[f"entity_last_{split}"] = capture_entity_activations(
            ws.model, enc, ws.layer, progress=True
        ).contiguous()
    atomic_save_dir(out / "activations", lambda tmp: save_file(tensors, str(tmp / "activations.safetensors")))
    console.print(
        f"wrote {out}/activations/activations.safetensors ({', '.join(f'{k}: {tuple(v.shape)}' for k, v in tensors.items())})"
    )


@app.command("train-sae")
def train_sae_cmd(
    out: Path = OutOpt,
    config: Optional[Path] = ConfigOpt,
    seed: Optional[int] = SeedOpt,
    layer: Optional[int] = LayerOpt,
    overwrite: bool = OverwriteOpt,
) -> None:
    """Train (or reuse from the cache) the SAE at the layer; copy it to OUT/sae in sae-lens format."""
    from sae_unlearn.sae.training import save_sae
    from sae_unlearn.stages.sae import get_sae
    from sae_unlearn.stages.subject import build_workspace

    with _user_errors():
        cfg, out = _stage(config, out, overwrite, seed, layer)
        ws = get_sae(build_workspace(cfg))
    save_sae(ws.sae, out / "sae")
    console.print(f"SAE (sae-lens format) in {out}/sae")


@app.command("select-latents")
def select_latents_cmd(
    out: Path = OutOpt,
    config: Optional[Path] = ConfigOpt,
    seed: Optional[int] = SeedOpt,
    layer: Optional[int] = LayerOpt,
    overwrite: bool = OverwriteOpt,
) -> None:
    """Separation scores of every latent (known vs unknown); write the top ones to latents.json."""
    from sae_unlearn.io_utils import atomic_write_json
    from sae_unlearn.stages.latents import select_latents
    from sae_unlearn.stages.sae import get_sae
    from sae_unlearn.stages.split import make_split
    from sae_unlearn.stages.subject import build_workspace

    with _user_errors():
        cfg, out = _stage(config, out, overwrite, seed, layer)
        ws = select_latents(make_split(get_sae(build_workspace(cfg))))
    assert ws.scores is not None
    atomic_write_json(out / "latents.json", ws.scores.table(cfg.latents.top_k))
    console.print(f"wrote {out}/latents.json")


@app.command("unlearn")
def unlearn_cmd(
    out: Path = OutOpt,
    config: Optional[Path] = ConfigOpt,
    seed: Optional[int] = SeedOpt,
    layer: Optional[int] = LayerOpt,
    steps: Optional[int] = typer.Option(None, "--steps"),
    method: Optional[str] = typer.Option(None, "--method"),
    overwrite: bool = OverwriteOpt,
    resume: bool = ResumeOpt,
) -> None:
    """Unlearn and evaluate (the demo's chain with a config); same outputs as the demo."""
    from sae_unlearn.runs import run_demo

    with _user_errors():
        cfg = _config(config, seed=seed, world__seed=seed, layer=layer, unlearn__steps=steps, unlearn__method=method)
        metrics = run_demo(cfg, out, overwrite=overwrite, methods=(cfg.unlearn.method,), resume=resume)
    _summary(metrics)


@app.command("evaluate")
def evaluate_cmd(
    model: Path = typer.Option(..., "--model", help="An unlearned model directory (save_pretrained)."),
    out: Path = OutOpt,
    config: Optional[Path] = ConfigOpt,
    seed: Optional[int] = SeedOpt,
    layer: Optional[int] = LayerOpt,
    qa: Optional[Path] = typer.Option(
        None,
        "--qa",
        help="Also score free-form answers to a QA file (JSON Lines: question, answer, optional entity and "
        "paraphrased_question) by ROUGE-L recall and containment, as RWKU and TOFU do (docs/attacks.md).",
    ),
    qa_template: str = typer.Option(
        "Q: {question} A:", "--qa-template", help="How a question is put to the model; '{question}' for cloze files."
    ),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Evaluate a saved unlearned model against the original one (the config must be the run's config.yaml)."""
    from sae_unlearn.attacks.saved import check_saved_model, load_edited
    from sae_unlearn.evaluation.evaluate import evaluate
    from sae_unlearn.evaluation.qa import check_template, evaluate_qa, load_qa_file
    from sae_unlearn.io_utils import atomic_write_json, atomic_write_text
    from sae_unlearn.stages.latents import select_latents
    from sae_unlearn.stages.sae import get_sae
    from sae_unlearn.stages.split import make_split
    from sae_unlearn.stages.subject import build_workspace

    with _user_errors():
        check_saved_model(model)  # before the workspace is built: a typo should not cost minutes
        qa_items = load_qa_file(qa) if qa is not None else None
        check_template(qa_template)
        cfg, out = _stage(config, out, overwrite, seed, layer)
        ws = select_latents(make_split(get_sae(build_workspace(cfg))))
        edited, outcome = load_edited(ws, model)
    metrics = evaluate(ws.evaluation, edited, outcome)
    if qa_items is not None:
        qa_metrics, answers = evaluate_qa(ws.evaluation, edited, outcome, qa_items, qa_template)
        metrics |= qa_metrics
        atomic_write_text(
            out / "qa_answers.jsonl", "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in answers)
        )
        console.print(f"wrote {out}/qa_answers.jsonl ({len(answers)} items, both models' answers)")
    atomic_write_json(out / "metrics.json", {"model": str(model), "methods": {"evaluated": metrics}})
    _summary({"methods": {"evaluated": metrics}})


@app.command("phrasings")
def phrasings_cmd(
    entities: Path = typer.Option(..., "--entities", "-e", help="Entity JSONL file whose facts are cloze statements."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the file with held-out phrasings added."),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Write an entity file with held-out phrasings (question, passing mention, aside) beside each fact,
    to read or edit them; `run` adds the same ones itself to entities that have none."""
    import json

    from sae_unlearn.entities.phrasings import with_heldout_phrasings
    from sae_unlearn.entities.real import load_entity_file
    from sae_unlearn.io_utils import atomic_write_text

    with _user_errors():
        if out.exists() and not overwrite:
            raise UserInputError(f"{out} exists; pass --overwrite to replace it.")
        extended = [with_heldout_phrasings(e) for e in load_entity_file(entities)]
    atomic_write_text(out, "".join(json.dumps(e.to_dict(), ensure_ascii=False) + "\n" for e in extended))
    n = sum(f.heldout for e in extended for f in e.facts)
    console.print(f"[green]wrote[/] {out}: {len(extended)} entities, {n} held-out phrasings")


@app.command("attack")
def attack_cmd(
    run_dir: Optional[Path] = typer.Option(
        None, "--run", help="An output directory of demo, run or compare: its config.yaml and every model it saved."
    ),
    model: Optional[Path] = typer.Option(
        None, "--model", help="Attack this model instead (a saved model or LoRA directory, or a *_inference_hook.json)."
    ),
    out: Path = OutOpt,
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="The run's config (default: RUN/config.yaml)."),
    relearn_steps: Optional[int] = typer.Option(
        None, "--relearn-steps", help="Fine-tuning steps of the relearning attack (default 20)."
    ),
    relearn_lr: Optional[float] = typer.Option(None, "--relearn-lr", help="Learning rate of the relearning attack."),
    overwrite: bool = OverwriteOpt,
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """Relearning, probing and paraphrase attacks (and the usual evaluation) on saved unlearned models:
    metrics.json, report.md and report.html in --out."""
    from sae_unlearn.attack_run import attack_run

    with _user_errors():
        overrides = {"attack.relearn_steps": relearn_steps, "attack.relearn_lr": relearn_lr, "attack.enabled": True}
        overrides["attack.extended"] = True  # every attack, whatever the run's config left out
        metrics = attack_run(run_dir, out, model, config, overrides, overwrite, progress=not quiet)
    _summary(metrics)
    console.print(f"[green]wrote[/] {out}/metrics.json, {out}/report.md, {out}/report.html")
