"""Unlearning methods behind one interface (``methods.base.Unlearner``) and a name registry."""

from __future__ import annotations

from sae_unlearn.errors import UserInputError
from sae_unlearn.methods.base import UnlearnOutcome, Unlearner, UnlearnTask
from sae_unlearn.methods.sae_guided import SAEGuidedConfig, SAEGuidedUnlearner

REGISTRY: dict[str, type[Unlearner]] = {
    SAEGuidedUnlearner.name: SAEGuidedUnlearner,
}


def get_method(name: str) -> type[Unlearner]:
    if name not in REGISTRY:
        raise UserInputError(f"Unknown method {name!r}; known methods: {', '.join(sorted(REGISTRY))}.")
    return REGISTRY[name]


__all__ = ["REGISTRY", "get_method", "Unlearner", "UnlearnTask", "UnlearnOutcome", "SAEGuidedConfig", "SAEGuidedUnlearner"]
