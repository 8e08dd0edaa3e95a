"""Typed configuration, validated before any compute: a bad field fails with its name and value.

A little over our ~300-line rule: every section of the run config sits in this one file, as docs/config.md
reads it; the per-method settings live with their methods (methods/options.py).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sae_unlearn.errors import UserInputError

log = logging.getLogger("sae_unlearn")


# The SAE-guided method's settings that sat directly under ``unlearn`` until 2026-12 (public keys: read as
# aliases of ``unlearn.methods.sae_guided.<key>`` for one release; docs/config.md)
FLAT_SAE_GUIDED_KEYS = (
    "lr",
    "w_toward",
    "w_away",
    "w_retain",
    "w_kl",
    "w_answer",
    "w_error",
    "w_output",
    "w_downstream",
    "retain_batch",
    "retain_paired",
    "forget_batch",
    "retain_positions",
    "contexts",
    "lead_ins",
    "eval_every",
    "stop_share",
    "stop_toward",
    "train_layers",
)
_warned: set[str] = set()


def warn_once(message: str) -> None:
    """A deprecation is said once per process, however many times a config is validated."""
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class WorldConfig(_Strict):
    """The synthetic world; per entity type (person, city, company)."""

    seed: int = 0
    n_known: int = Field(80, ge=4)
    n_obscure: int = Field(160, ge=0)
    n_unknown: int = Field(40, ge=4)
    copies_per_fact: int = Field(2, ge=1, le=8)
    # a person's hometown is a known city (reverse questions reach a forgotten city; entities/synthetic.LINKS)
    links: bool = False


class WorldModelConfig(_Strict):
    """The tiny GPT-2 trained from scratch on the world's corpus."""

    n_layer: int = Field(4, ge=1)
    d_model: int = Field(128, ge=16)
    n_head: int = Field(4, ge=1)
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-3, gt=0)
    # gradient-norm clipping; None: 1.0 for a linked world (DemoConfig; world seed 1's linked model hit a loss spike
    # at its peak lr without it, docs/synthetic_world.md), no clipping otherwise (every unlinked model as measured)
    grad_clip: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _heads_divide(self) -> "WorldModelConfig":
        if self.d_model % self.n_head:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_head ({self.n_head})")
        return self


class ModelConfig(_Strict):
    """The model to edit: a Hugging Face hub id, a local directory or a built-in name (``smollm2-135m``).
    ``name: null`` means the synthetic world's own model."""

    name: str | None = None
    dtype: Literal["float32", "bfloat16"] = "float32"
    # train a peft LoRA adapter on the trained layers instead of full weights: every method (true), or only
    # the methods listed (the SmolLM2 demo: [sae_guided]; the baselines' papers fine-tune full weights)
    lora: bool | list[str] = False
    lora_rank: int = Field(16, ge=1)
    lora_alpha: float = Field(32.0, gt=0)
    gradient_checkpointing: bool = False

    @model_validator(mode="after")
    def _lora_methods_exist(self) -> "ModelConfig":
        if isinstance(self.lora, list):
            from sae_unlearn.methods import REGISTRY  # here: the methods package is heavy and config is imported first

            unknown = [m for m in self.lora if m not in REGISTRY]
            if unknown:
                raise ValueError(f"lora lists unknown methods {unknown}; known methods: {', '.join(sorted(REGISTRY))}")
        return self

    def lora_for(self, method: str) -> bool:
        return self.lora is True or (isinstance(self.lora, list) and method in self.lora)


class EntitiesConfig(_Strict):
    """Real entities (JSONL, see entities/real.py); unused by the synthetic world."""

    file: Path | None = None  # None: the bundled data/real_entities.jsonl
    n_fictional: int = Field(30, ge=2)  # generated unknown names per entity type
    max_unknown_eval: int = Field(60, ge=2)  # file entities with zero recall kept for evaluation
    strict: bool = False  # a forget entity the model does not know: stop (True) or skip it (False)
    # facts of an entity that has no held-out phrasing get question / passing-mention / appositive phrasings
    # (entities/phrasings.py), never in any loss, and recall reads those; false: recall reads all facts
    heldout_phrasings: bool = True


class SAETrainConfig(_Strict):
    """Train an SAE (when no ``path``/``release`` is given) or load one with sae-lens."""

    path: Path | None = None  # local sae-lens directory
    release: str | None = None  # sae-lens pretrained release ...
    sae_id: str | None = None  # ... and id within it
    expansion: int = Field(4, ge=1)
    l1_coefficient: float = Field(3.0, ge=0)
    total_samples: int = Field(300_000, ge=1000)
    batch_size: int = Field(512, ge=8)
    lr: float = Field(1e-3, gt=0)
    # Real models only: the SAE's text is every entity prompt plus the model's own continuations.
    generation_prompts: int = Field(256, ge=0)
    generation_tokens: int = Field(32, ge=1)
    # train on every token but the structural special ones (BOS, EOS, PAD; sae-lens' name) and those the
    # tokenizer adds (our document start): stages/sae.py
    exclude_special_tokens: bool = False
    b_dec_init: Literal["zeros", "mean"] = "zeros"  # the decoder bias' start (sae/training.py)


class LatentConfig(_Strict):
    top_k: int = Field(10, ge=1)


class UnlearnConfig(_Strict):
    method: str = "sae_guided"
    forget: list[str] = Field(default_factory=list)  # entity names; empty: draw n_forget at random
    n_forget: int = Field(10, ge=1)
    # the losses see only what the model says about each name in ``forget`` (stages/name_only.py), never
    # the entity file's facts about it; a name need not be in the file
    name_only: bool = False
    retain_fraction: float = Field(0.5, gt=0, lt=1)  # of the other known entities, used in the retain loss
    steps: int = Field(400, ge=1)  # every method's step budget
    # every method also forgets the training phrasings of other known entities' facts whose answer is a target
    # ("X grew up in <target>"): the target as an answer, which reverse questions ask (docs/method.md; on since
    # 2026-12-06: SAE-guided's reverse questions 1.000 -> 0.000-0.167 on linked worlds, floor 0.000)
    reverse_facts: bool = True
    checkpoint_every: int = Field(25, ge=0)  # steps between crash-safe checkpoints in OUT/checkpoints; 0: none
    # Per-method settings, e.g. {npo: {beta: 0.1, lr: 1e-4}}: names and keys checked against the method registry
    # and each method's typed settings (methods/options.py) when the config loads, before any compute
    methods: dict[str, dict] = Field(default_factory=dict)
    method_options: dict[str, dict] = Field(default_factory=dict)  # the old name of ``methods`` (deprecated)

    @model_validator(mode="before")
    @classmethod
    def _flat_sae_guided_keys(cls, data):
        """The SAE-guided settings written directly under ``unlearn`` (the keys before 2026-12) are read into
        ``unlearn.methods.sae_guided``, with a warning; the same setting in both places is refused."""
        if not isinstance(data, dict) or not (flat := {k: data[k] for k in FLAT_SAE_GUIDED_KEYS if k in data}):
            return data
        data = {k: v for k, v in data.items() if k not in flat}
        methods = dict(data.get("methods") or {})
        block = dict(methods.get("sae_guided") or {})
        if both := sorted(set(flat) & set(block)):
            raise ValueError(
                f"{', '.join(both)} set both as unlearn.{both[0]} and as unlearn.methods.sae_guided.{both[0]}; "
                "keep the second (the first is the old name)"
            )
        methods["sae_guided"] = flat | block
        data["methods"] = methods
        warn_once(
            f"unlearn.{{{', '.join(sorted(flat))}}}: SAE-guided settings now live under unlearn.methods.sae_guided "
            "(same names); the old place is read until the next release"
        )
        return data

    @model_validator(mode="after")
    def _methods_exist(self) -> "UnlearnConfig":
        from sae_unlearn.methods import REGISTRY, method_settings  # here: the methods package is heavy

        if self.method not in REGISTRY:
            raise ValueError(f"unknown method {self.method!r}; known methods: {', '.join(sorted(REGISTRY))}")
        if self.method_options:
            warn_once("unlearn.method_options is deprecated; write the same blocks under unlearn.methods")
        for block in (self.method_options, self.methods):
            for name, options in block.items():
                try:
                    method_settings(name, options)
                except UserInputError as exc:  # pydantic reports it with the field's path
                    raise ValueError(str(exc)) from exc
        return self

    def options_for(self, method: str) -> dict:
        """The user's settings of ``method`` (``methods`` wins over the deprecated ``method_options``)."""
        return self.method_options.get(method, {}) | self.methods.get(method, {})


class EvalConfig(_Strict):
    max_new_tokens: int = Field(4, ge=1)
    known_threshold: float = Field(0.9, ge=0, le=1)  # share of facts recalled for "known"
    # retained, held-out known and unknown entities whose recall is scored: a seeded sample of this many per
    # set (the same before and after), or all (None). Evaluation's cost grows with these sets (docs/metrics.md)
    max_scored_entities: int | None = Field(None, ge=1)
    # real models: a fact the model completes for any of this many made-up names of the entity's type
    # tests the prompt, not the entity, and is left out of recall (metrics/answerable.py); 0: keep all
    answerable_substitutes: int = Field(4, ge=0)


QUANTIZE_WIDTHS = (8, 4)  # the bit widths the quantisation attack rounds to (each has its registered metric)


class AttackConfig(_Strict):
    """Attacks that try to bring forgotten knowledge back (attacks/; docs/attacks.md), run on every method."""

    enabled: bool = True
    relearn_steps: int = Field(20, ge=0)  # fine-tuning steps on part of the targets' facts; 0: no relearning attack
    # high enough to teach, low enough that the original model keeps its other facts (docs/attacks.md)
    relearn_lr: float = Field(1e-4, gt=0)
    relearn_eval_every: int = Field(5, ge=1)  # recall of the held-back facts every N attack steps (the curve)
    generation_tokens: int = Field(24, ge=4)  # free generation about each target
    # the targets' recall after the decoder weights are rounded to each of these bit widths ([]: none)
    quantize_bits: list[int] = Field(default_factory=lambda: [8, 4])
    # the quantisation, membership-inference and indirect-question attacks (issue 24). False: a run leaves them to
    # `compare` and `attack`, which always run them (the SmolLM2 demo: ~65 s of its 15 minutes, docs/results.md)
    extended: bool = True

    @model_validator(mode="after")
    def _bits_in_range(self) -> "AttackConfig":
        if bad := [b for b in self.quantize_bits if b not in QUANTIZE_WIDTHS]:
            raise ValueError(f"quantize_bits {bad}: the attack rounds to 8 or 4 bits (attacks/quantization.py)")
        return self


class DemoConfig(_Strict):
    """Everything a run needs (``demo``, ``run``, ``compare`` and the stage commands share this schema)."""

    seed: int = 0
    layer: int | None = None  # None: the middle decoder block
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    model: ModelConfig = ModelConfig()
    entities: EntitiesConfig = EntitiesConfig()
    world: WorldConfig = WorldConfig()
    world_model: WorldModelConfig = WorldModelConfig()
    sae: SAETrainConfig = SAETrainConfig()
    latents: LatentConfig = LatentConfig()
    unlearn: UnlearnConfig = UnlearnConfig()
    eval: EvalConfig = EvalConfig()
    attack: AttackConfig = AttackConfig()

    @model_validator(mode="after")
    def _linked_worlds_clip(self) -> "DemoConfig":
        if self.world.links and self.world_model.grad_clip is None:  # None, not unset: config.yaml writes it out
            self.world_model.grad_clip = 1.0
        return self


RunConfig = DemoConfig  # the same schema; ``run`` reads ``model`` and ``entities``, the synthetic demo ``world``


def load_config(path: Path | None, overrides: dict | None = None, base: dict | None = None) -> DemoConfig:
    """YAML file (or ``base``, a mapping of the same settings; optional) then flag overrides (dotted keys),
    validated as one object."""
    data: dict = copy.deepcopy(base) if base is not None else {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise UserInputError(f"Config file {path} does not exist.")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise UserInputError(f"Config file {path} is not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise UserInputError(f"Config file {path} must hold a mapping of settings, not {type(loaded).__name__}.")
        data = loaded or {}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    try:
        cfg = DemoConfig.model_validate(data)
    except ValidationError as exc:
        raise UserInputError(_explain(exc, path)) from exc
    _check_name_only(cfg)
    return cfg


def _check_name_only(cfg: DemoConfig) -> None:
    """Before any compute: --name-only needs names, and a real model to say what it knows of them."""
    if not cfg.unlearn.name_only:
        return
    if not cfg.unlearn.forget:
        raise UserInputError('--name-only forgets the names you give: add --forget "Name1,Name2".')
    if not cfg.model.name:
        raise UserInputError(
            "--name-only needs a real model (--model): the synthetic world's model knows nothing "
            "beyond its own world, so there is nothing to ask it about a name."
        )


def _explain(exc: ValidationError, path: Path | None) -> str:
    where = f" in {path}" if path else ""
    lines = [f"Invalid configuration{where}:"]
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"  - {field}: unknown setting; check its spelling against the documented keys")
        elif err["type"] == "value_error":  # our own checks: the message names the setting and the fix
            lines.append(f"  - {field}: {err['msg'].removeprefix('Value error, ')}")
        else:
            lines.append(f"  - {field} = {err.get('input')!r}: {err['msg']}")
    return "\n".join(lines)


def dump_config(cfg: DemoConfig) -> str:
    """A run's config.yaml: every setting, every method's included (its defaults written out), so that a
    later release's defaults cannot change what re-running this file does."""
    from sae_unlearn.methods import REGISTRY, method_settings

    data = cfg.model_dump(mode="json")
    order = [cfg.unlearn.method] + sorted(set(REGISTRY) - {cfg.unlearn.method})
    data["unlearn"]["methods"] = {
        name: method_settings(name, cfg.unlearn.options_for(name)).model_dump(mode="json") for name in order
    }
    data["unlearn"]["method_options"] = {}  # read into ``methods`` above
    return yaml.safe_dump(data, sort_keys=False)


def _flat(d: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in d.items():
        if isinstance(value, dict) and value:
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


# what a draw changes (the targets and split; on the synthetic world, the world itself)
DRAW_KEYS = ("seed", "world.seed")
# where and how often a run saved: may differ between the machines that ran two draws, computing the same
RUN_PLACE_KEYS = ("device", "unlearn.checkpoint_every")


def config_differences(a: dict, b: dict, ignore: tuple[str, ...] = ()) -> list[str]:
    """``"key: a vs b"`` for each dotted key whose value differs between two configs as config.yaml holds them
    (``yaml.safe_load``); keys equal to or under an ``ignore`` entry are skipped. Used where runs are only
    comparable under one configuration (``compare --settings-from``, ``aggregate``)."""
    flat_a, flat_b = _flat(a), _flat(b)
    skipped = lambda key: any(key == i or key.startswith(f"{i}.") for i in ignore)  # noqa: E731
    keys = sorted(k for k in set(flat_a) | set(flat_b) if not skipped(k) and flat_a.get(k) != flat_b.get(k))
    return [f"{k}: {flat_a.get(k)!r} vs {flat_b.get(k)!r}" for k in keys]
