"""The method registry: each method registers itself with ``@register_method`` next to its class; the CLI, the
config check, ``compare`` and the contract tests (tests/test_method_contracts.py) all read this one table."""

from __future__ import annotations

from typing import TypeVar

from pydantic import ValidationError

from sae_unlearn.errors import UserInputError
from sae_unlearn.methods.base import Unlearner
from sae_unlearn.methods.options import MethodOptions

# name -> (class, its typed settings)
REGISTRY: dict[str, tuple[type[Unlearner], type[MethodOptions]]] = {}
U = TypeVar("U", bound=type[Unlearner])


def register_method(cls: U) -> U:
    """Class decorator: ``cls.name`` joins the registry with ``cls.config_cls`` as its settings."""
    if cls.name in REGISTRY:
        raise ValueError(f"method {cls.name!r} is registered twice")
    REGISTRY[cls.name] = (cls, cls.config_cls)
    return cls


def get_method(name: str) -> type[Unlearner]:
    if name not in REGISTRY:
        raise UserInputError(f"Unknown method {name!r}; known methods: {', '.join(sorted(REGISTRY))}.")
    return REGISTRY[name][0]


def method_settings(name: str, options: dict | None = None) -> MethodOptions:
    """``options`` checked against method ``name``'s settings: an unknown key or a bad value is a clear error."""
    get_method(name)
    cfg_cls = REGISTRY[name][1]
    unknown = sorted(set(options or {}) - set(cfg_cls.model_fields))
    if unknown:
        raise UserInputError(
            f"Unknown option(s) {unknown} for method {name!r}; allowed: {', '.join(sorted(cfg_cls.model_fields))}."
        )
    try:
        return cfg_cls.model_validate(options or {})
    except ValidationError as exc:
        bad = "; ".join(f"{'.'.join(map(str, e['loc']))} = {e.get('input')!r}: {e['msg']}" for e in exc.errors())
        raise UserInputError(f"Invalid option(s) for method {name!r}: {bad}.") from exc


def build_method(name: str, options: dict | None = None) -> Unlearner:
    """Instantiate ``name`` with ``options`` checked against its settings."""
    return REGISTRY[name][0](method_settings(name, options))
