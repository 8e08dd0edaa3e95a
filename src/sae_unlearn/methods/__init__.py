"""Unlearning methods behind one interface (``methods.base.Unlearner``) and a name registry.

Adding a method: one module with an ``Unlearner`` subclass decorated with ``@register_method`` and its settings
(a ``methods.options.MethodOptions``), imported below so that it registers.
"""

from __future__ import annotations

from sae_unlearn.methods import grad_diff, gradient_ascent, idk, npo, rmu, sae_clamp, sae_guided, simnpo  # noqa: F401  (register)
from sae_unlearn.methods.base import Unlearner, UnlearnOutcome, UnlearnTask
from sae_unlearn.methods.registry import REGISTRY, build_method, get_method, method_settings, register_method

__all__ = [
    "REGISTRY",
    "build_method",
    "get_method",
    "method_settings",
    "register_method",
    "Unlearner",
    "UnlearnTask",
    "UnlearnOutcome",
]
