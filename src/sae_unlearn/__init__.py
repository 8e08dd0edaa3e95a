"""sae-unlearn: make a language model forget chosen entities by moving their internal
representation, in the latent space of a sparse autoencoder, onto that of entities it never saw."""

__version__ = "0.1.0"

__all__ = ["unlearn", "evaluate", "load_unlearned", "UnlearnResult"]


def __getattr__(name: str):
    """The API (api.py) loads on first use: ``import sae_unlearn`` and the CLI's start stay light."""
    if name in __all__:
        from sae_unlearn import api

        return getattr(api, name)
    raise AttributeError(f"module 'sae_unlearn' has no attribute {name!r}")
