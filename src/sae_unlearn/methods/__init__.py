"""Unlearning methods behind one interface (``methods.base.Unlearner``) and a name registry.

Adding a method: one module with an ``Unlearner`` subclass (and a config dataclass), one entry here.
"""

from __future__ import annotations

from dataclasses import fields

from sae_unlearn.errors import UserInputError
from sae_unlearn.methods.base import UnlearnOutcome, Unlearner, UnlearnTask
from sae_unlearn.methods.grad_diff import GradDiffConfig, GradDiffUnlearner
from sae_unlearn.methods.gradient_ascent import GradientAscentConfig, GradientAscentUnlearner
from sae_unlearn.methods.npo import NPOConfig, NPOUnlearner
from sae_unlearn.methods.rmu import RMUConfig, RMUUnlearner
from sae_unlearn.methods.sae_clamp import SAEClampConfig, SAEClampUnlearner
from sae_unlearn.methods.sae_guided import SAEGuidedConfig, SAEGuidedUnlearner

# name -> (class, its config dataclass)
REGISTRY: dict[str, tuple[type[Unlearner], type]] = {
    SAEGuidedUnlearner.name: (SAEGuidedUnlearner, SAEGuidedConfig),
    GradientAscentUnlearner.name: (GradientAscentUnlearner, GradientAscentConfig),
    GradDiffUnlearner.name: (GradDiffUnlearner, GradDiffConfig),
    NPOUnlearner.name: (NPOUnlearner, NPOConfig),
    RMUUnlearner.name: (RMUUnlearner, RMUConfig),
    SAEClampUnlearner.name: (SAEClampUnlearner, SAEClampConfig),
}


def get_method(name: str) -> type[Unlearner]:
    if name not in REGISTRY:
        raise UserInputError(f"Unknown method {name!r}; known methods: {', '.join(sorted(REGISTRY))}.")
    return REGISTRY[name][0]


def build_method(name: str, options: dict | None = None) -> Unlearner:
    """Instantiate ``name`` with ``options`` checked against its config's fields."""
    cls, cfg_cls = REGISTRY[name] if name in REGISTRY else (get_method(name), None)
    allowed = {f.name for f in fields(cfg_cls)}
    unknown = sorted(set(options or {}) - allowed)
    if unknown:
        raise UserInputError(f"Unknown option(s) {unknown} for method {name!r}; allowed: {', '.join(sorted(allowed))}.")
    return cls(cfg_cls(**(options or {})))


__all__ = ["REGISTRY", "build_method", "get_method", "Unlearner", "UnlearnTask", "UnlearnOutcome"]
