"""sae-unlearn: make a language model forget chosen entities by moving their internal
representation, in the latent space of a sparse autoencoder, onto that of entities it never saw."""

__version__ = "0.1.0"
